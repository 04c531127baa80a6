import { expect } from 'chai';
import { Pool, syntheticDriver, type Driver, type PoolSettings } from '@shoal/pool-node';
import { ShoalError, type Lease } from '@shoal/protocol';
import { FakeClock, seeded, settle } from '../helpers/fake-clock.js';

function settings(over: Partial<PoolSettings> & { sm?: Partial<PoolSettings['sessionManagement']>; cr?: Partial<PoolSettings['create']>; rl?: Partial<PoolSettings['resourceLimits']> } = {}): PoolSettings {
  const { sm, cr, rl, ...rest } = over;
  return {
    name: 'p', minSize: 0, maxSize: 2, initialSize: 0, maxWaitingClients: 100, acquireTimeoutMs: 1000, leaseTtlMs: 60_000, weight: 1,
    sessionManagement: { enableReuse: true, idleTimeoutMs: 0, maxLifetimeMs: 0, lifetimeJitter: 0, maxReuseCount: 0, contextReset: false, cleanupIntervalMs: 0, validateOnReturn: false, validateSkipWindowMs: 0, maxParked: 2, parkTtlMs: 600_000, ...sm },
    create: { timeoutMs: 5000, retryBaseMs: 100, retryMaxMs: 10_000, ...cr },
    resourceLimits: { maxMemoryPerSessionBytes: 0, maxTotalMemoryBytes: 0, ...rl },
    ...rest,
  };
}

/** The synthetic driver, counting every call. */
function counting(clock: FakeClock, options: Record<string, unknown> = {}, random = seeded()) {
  const inner = syntheticDriver({ clock, random, options, poolName: 'p' }) as Driver<any>;
  const n = { create: 0, destroy: 0, validate: 0, reset: 0, createdIds: [] as string[] };
  const d: Driver<any> = {
    ...inner,
    create: async (ctx) => { n.create++; const r = await inner.create(ctx); n.createdIds.push(r.id); return r; },
    destroy: async (r) => { n.destroy++; return inner.destroy(r); },
    validate: async (r) => { n.validate++; return inner.validate(r); },
    reset: async (r) => { n.reset++; return inner.reset(r); },
  };
  return { d, n };
}

async function rejection(p: Promise<unknown>): Promise<ShoalError> {
  try { await p; } catch (err) { return err as ShoalError; }
  throw new Error('expected a rejection');
}

describe('Pool (unit, fake clock)', () => {
  let clock: FakeClock;
  const pools: Pool[] = [];
  beforeEach(() => { clock = new FakeClock(); });
  afterEach(async () => { for (const p of pools.splice(0)) await p.close(); });
  const mk = (s: PoolSettings, d: Driver<any>, random = seeded()) => { const p = new Pool(s, d, clock, random); pools.push(p); return p; };
  const wait = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));

  it('warms up to the initial size in parallel', async () => {
    const { d, n } = counting(clock, { create_latency: 100 });
    const pool = mk(settings({ minSize: 1, initialSize: 3, maxSize: 5 }), d);
    const started = pool.start();
    await clock.advance(100);
    await started;
    expect(n.create).to.equal(3);
    expect(pool.numbers()).to.include({ total: 3, idle: 3, active: 0, creating: 0 });
  });

  it('hands out idle resources, marks reuse, and parks returned ones', async () => {
    const { d } = counting(clock);
    const pool = mk(settings({ initialSize: 1, maxSize: 1 }), d);
    await pool.start();
    const a = await pool.acquire();
    expect(a.reused).to.equal(false);
    expect(pool.numbers()).to.include({ active: 1, idle: 0 });
    pool.release(a.leaseId);
    await settle();
    const b = await pool.acquire();
    expect(b.reused).to.equal(true);
    expect(b.resourceId).to.equal(a.resourceId);
    expect(pool.meter.reuseRate).to.equal(0.5);
  });

  it('serves waiters beyond max in FIFO order within a priority, higher priority first', async () => {
    const { d } = counting(clock);
    const pool = mk(settings({ maxSize: 1 }), d);
    const first = await pool.acquire();
    const order: string[] = [];
    const leases: Record<string, Lease> = {};
    const want = (tag: string, priority = 0) => pool.acquire({ priority, timeoutMs: 10_000 }).then((l) => { order.push(tag); leases[tag] = l; });
    const all = [want('a'), want('b'), want('hi', 5), want('c')];
    expect(pool.numbers().waiting).to.equal(4);
    let held = first;
    for (let i = 0; i < 4; i++) {
      pool.release(held.leaseId);
      await settle();
      held = leases[order[order.length - 1]!]!;
    }
    await Promise.all(all);
    expect(order).to.deep.equal(['hi', 'a', 'b', 'c']);
  });

  it('times a waiter out at its deadline with POOL_TIMEOUT and the pool numbers', async () => {
    const { d } = counting(clock);
    const pool = mk(settings({ maxSize: 1 }), d);
    await pool.acquire();
    const p = rejection(pool.acquire({ timeoutMs: 250 }));
    await clock.advance(249);
    expect(pool.numbers().waiting).to.equal(1);
    await clock.advance(1);
    const err = await p;
    expect(err.code).to.equal('POOL_TIMEOUT');
    expect(err.pool).to.include({ total: 1, active: 1, idle: 0, waiting: 1 });
    expect(err.message).to.match(/total=1, active=1, idle=0, waiting=1/);
    expect(pool.numbers().waiting).to.equal(0);
  });

  it('refuses beyond max_waiting_clients with POOL_EXHAUSTED', async () => {
    const { d } = counting(clock);
    const pool = mk(settings({ maxSize: 1, maxWaitingClients: 2 }), d);
    await pool.acquire();
    const w1 = rejection(pool.acquire({ timeoutMs: 100 }));
    const w2 = rejection(pool.acquire({ timeoutMs: 100 }));
    const err = await rejection(pool.acquire({ timeoutMs: 100 }));
    expect(err.code).to.equal('POOL_EXHAUSTED');
    expect(err.pool?.waiting).to.equal(2);
    await clock.advance(100);
    expect((await w1).code).to.equal('POOL_TIMEOUT');
    expect((await w2).code).to.equal('POOL_TIMEOUT');
  });

  it('reclaims an expired lease (reset before reuse); renew keeps a lease past its TTL', async () => {
    const { d, n } = counting(clock);
    const pool = mk(settings({ maxSize: 2 }), d);
    const a = await pool.acquire({ ttlMs: 1000 });
    const b = await pool.acquire({ ttlMs: 1000 });
    await clock.advance(800);
    pool.renew(b.leaseId, 1000);
    await clock.advance(300);
    expect(pool.numbers()).to.include({ active: 1, idle: 1 });
    expect(n.reset).to.equal(1);
    expect(() => pool.release(a.leaseId)).to.throw().with.property('code', 'LEASE_EXPIRED');
    expect(() => pool.renew(a.leaseId)).to.throw().with.property('code', 'LEASE_EXPIRED');
    expect(() => pool.release('01NOPE')).to.throw().with.property('code', 'LEASE_NOT_FOUND');
    await clock.advance(800);
    expect(pool.numbers()).to.include({ active: 0, idle: 2 });
    const c = await pool.acquire();
    expect(c.reused).to.equal(true);
  });

  it('destroys on release with destroy, on reuse disabled, and after max reuse count, then refills to target', async () => {
    const { d, n } = counting(clock);
    const pool = mk(settings({ minSize: 1, initialSize: 1, maxSize: 1, sm: { maxReuseCount: 2 } }), d);
    await pool.start();
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const l = await pool.acquire();
      ids.push(l.resourceId);
      pool.release(l.leaseId);
      await settle(); await settle();
    }
    expect(ids[0]).to.equal(ids[1]);
    expect(ids[2]).to.not.equal(ids[1]);
    expect(ids[3]).to.equal(ids[2]);
    const l = await pool.acquire();
    pool.release(l.leaseId, { destroy: true });
    await settle(); await settle();
    expect(n.destroy).to.equal(3);
    expect(pool.numbers().total).to.equal(1);

    const { d: d2, n: n2 } = counting(clock);
    const p2 = mk(settings({ maxSize: 1, sm: { enableReuse: false } }), d2);
    const x = await p2.acquire();
    p2.release(x.leaseId);
    await settle();
    expect(n2.destroy).to.equal(1);
  });

  it('resets on return when context_reset is on, and validates unless validated within the skip window', async () => {
    const { d, n } = counting(clock);
    const pool = mk(settings({ initialSize: 1, maxSize: 1, sm: { contextReset: true, validateOnReturn: true, validateSkipWindowMs: 500 } }), d);
    await pool.start();
    let l = await pool.acquire();
    pool.release(l.leaseId); await settle();
    expect(n.validate).to.equal(0); // created just now: skipped
    await clock.advance(600);
    l = await pool.acquire();
    pool.release(l.leaseId); await settle();
    expect(n.validate).to.equal(1);
    l = await pool.acquire();
    pool.release(l.leaseId); await settle();
    expect(n.validate).to.equal(1);
    expect(n.reset).to.equal(3);
  });

  it("one validation timer: the cleanup validates idle resources at the driver's validateIntervalMs, replacing one that fails; probeIdle validates now", async () => {
    const { d: inner, n } = counting(clock);
    let healthy = true;
    const d: Driver<any> = { ...inner, validateIntervalMs: 100, validate: async (r) => { await inner.validate(r); return healthy; } };
    // cleanup_interval 60 s, validate_on_return off: only the driver's interval can make this validate.
    const pool = mk(settings({ minSize: 1, initialSize: 1, maxSize: 1, sm: { cleanupIntervalMs: 60_000 } }), d);
    await pool.start();
    await clock.advance(250);
    expect(n.validate).to.be.within(1, 3);
    healthy = false;
    await clock.advance(100);
    expect(n.destroy).to.equal(1);
    expect(n.create).to.equal(2);
    healthy = true;
    const before = n.validate;
    expect(await pool.probeIdle()).to.equal(true);
    expect(n.validate).to.equal(before + 1);
  });

  it('destroys a resource that fails validation and replaces it', async () => {
    const { d, n } = counting(clock);
    const pool = mk(settings({ minSize: 1, initialSize: 1, maxSize: 1, sm: { validateOnReturn: true } }), d);
    await pool.start();
    const l = await pool.acquire();
    await pool.exec(l.leaseId, 'kill', {}, () => {});
    pool.release(l.leaseId);
    await settle(); await settle();
    expect(n.destroy).to.equal(1);
    expect(n.create).to.equal(2);
  });

  it('shrinks idle resources after the idle timeout, down to the target only', async () => {
    const { d } = counting(clock);
    const pool = mk(settings({ minSize: 1, initialSize: 1, maxSize: 4, sm: { idleTimeoutMs: 1000, cleanupIntervalMs: 500 } }), d);
    await pool.start();
    const ls = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()]);
    await settle();
    for (const l of ls) pool.release(l.leaseId);
    await settle();
    expect(pool.numbers().idle).to.equal(3);
    await clock.advance(1600);
    expect(pool.numbers()).to.include({ total: 1, idle: 1 });
  });

  it('expires resources at max lifetime with jitter, so they do not all go at once, and refills', async () => {
    const { d, n } = counting(clock);
    const pool = mk(settings({ minSize: 4, initialSize: 4, maxSize: 4, sm: { maxLifetimeMs: 10_000, lifetimeJitter: 0.5, cleanupIntervalMs: 250 } }), d);
    await pool.start();
    const firstIds = n.createdIds.slice();
    const goneAt: number[] = [];
    for (let t = 0; t < 10_000; t += 250) {
      await clock.advance(250);
      const alive = new Set(pool.snapshot().resources.map((r) => r.id));
      for (const id of firstIds) if (!alive.has(id) && !goneAt[firstIds.indexOf(id)]) goneAt[firstIds.indexOf(id)] = t;
    }
    expect(goneAt.filter(Boolean)).to.have.length(4);
    expect(new Set(goneAt).size).to.be.greaterThan(1);
    expect(Math.min(...goneAt)).to.be.at.least(4750);
    expect(pool.numbers().total).to.equal(4);
  });

  it('hands a create error to its waiter and backs off instead of spinning', async () => {
    const { d, n } = counting(clock, { failure_rate: 1 });
    const pool = mk(settings({ maxSize: 2, cr: { retryBaseMs: 100, retryMaxMs: 1600 } }), d, () => 0.99);
    const err = await rejection(pool.acquire({ timeoutMs: 5000 }));
    // Nothing left to lease: the pool is down, and says so at once (retryable) rather than after a wait.
    expect(err.code).to.equal('POOL_UNAVAILABLE');
    expect(err.retryable).to.equal(true);
    expect(err.message).to.contain('synthetic create failure');
    expect(err.pool).to.not.equal(undefined);
    // Keep demand up for 10 s: attempts must follow the backoff, one at a time.
    const waiters = [rejection(pool.acquire({ timeoutMs: 10_000 }))];
    for (let t = 0; t < 10_000; t += 50) {
      await clock.advance(50);
      if (pool.numbers().waiting === 0) waiters.push(rejection(pool.acquire({ timeoutMs: 10_000 })));
    }
    // 100,200,400,800,1600,1600,... ms (×~1) → about 10 attempts in 10 s, not thousands.
    expect(n.create).to.be.within(6, 14);
    await clock.advance(10_000);
    for (const w of waiters) expect((await w).code).to.be.oneOf(['POOL_UNAVAILABLE', 'POOL_TIMEOUT']);
  });

  it('times out a create that hangs, and a waiter is never left past its deadline', async () => {
    const { d } = counting(clock, { create_latency: 60_000 });
    const pool = mk(settings({ maxSize: 1, cr: { timeoutMs: 1000 } }), d);
    const p = rejection(pool.acquire({ timeoutMs: 3000 }));
    await clock.advance(1000);
    const err = await p;
    expect(err.code).to.equal('POOL_UNAVAILABLE');
    expect(err.message).to.contain('timed out');
    const late = rejection(pool.acquire({ timeoutMs: 50 }));
    await clock.advance(50);
    expect((await late).code).to.be.oneOf(['POOL_TIMEOUT', 'POOL_UNAVAILABLE']);
  });

  it('scales up, down and to a target within min and max; scale-down takes idle first, never a leased one', async () => {
    const { d } = counting(clock);
    const pool = mk(settings({ minSize: 1, initialSize: 2, maxSize: 5 }), d);
    await pool.start();
    expect(pool.scale('up', 10).target).to.equal(5);
    await settle();
    expect(pool.numbers().total).to.equal(5);
    const held = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()]);
    expect(pool.scale('target', 0).target).to.equal(1);
    await settle();
    expect(pool.numbers()).to.include({ active: 3, idle: 0 });
    pool.release(held[0]!.leaseId);
    pool.release(held[1]!.leaseId);
    await settle(); await settle();
    expect(pool.numbers()).to.include({ total: 1, active: 1 });
    expect(pool.scale('down', 3).target).to.equal(1);
    pool.release(held[2]!.leaseId);
    await settle();
    expect(pool.numbers()).to.include({ total: 1, idle: 1 });
  });

  it('streams exec events, and aborts an exec whose lease ends under it', async () => {
    const { d } = counting(clock);
    const pool = mk(settings({ maxSize: 1 }), d);
    const l = await pool.acquire({ ttlMs: 1000 });
    const events: unknown[] = [];
    const res = pool.exec(l.leaseId, 'stream', { chunks: 3, interval_ms: 10 }, (e) => events.push(e));
    await clock.advance(30);
    expect(await res).to.deep.equal({ chunks: 3 });
    expect(events).to.deep.equal([{ chunk: 0 }, { chunk: 1 }, { chunk: 2 }]);
    const long = rejection(pool.exec(l.leaseId, 'sleep', { ms: 5000 }, () => {}));
    await clock.advance(1000);
    expect((await long).code).to.equal('CANCELLED');
    const unsupported = await rejection(pool.acquire().then((x) => pool.exec(x.leaseId, 'nope', {}, () => {})));
    expect(unsupported.code).to.equal('UNSUPPORTED_OP');
  });

  it('destroys a resource over max_memory_per_session on return', async () => {
    const { d, n } = counting(clock, { memory_bytes: 2000 });
    const pool = mk(settings({ maxSize: 1, rl: { maxMemoryPerSessionBytes: 1000 } }), d);
    const l = await pool.acquire();
    pool.release(l.leaseId);
    await settle();
    expect(n.destroy).to.equal(1);
  });

  it('reports itself unavailable with the reason while creates fail and nothing is usable, and passes a driver error code to waiters', async () => {
    const { d } = counting(clock);
    let down = true;
    const flaky: Driver<any> = { ...d, create: async (ctx) => { if (down) throw new ShoalError('WEAVIATE_UNAVAILABLE', 'connect ECONNREFUSED 127.0.0.1:8080', { details: { retryable: true } }); return d.create(ctx); }, describe: (r) => ({ sessionId: 'sess-' + r.id }) };
    const pool = mk(settings({ minSize: 1, initialSize: 1, maxSize: 1, cr: { retryBaseMs: 100, retryMaxMs: 100 } }), flaky, () => 0.5);
    await pool.start();
    expect(pool.availability().available).to.equal(false);
    expect(pool.availability().reason).to.contain('connect ECONNREFUSED 127.0.0.1:8080');
    // Known down: the acquire is refused at once with the driver's own code, not after a wait.
    const err = await rejection(pool.acquire({ timeoutMs: 1000 }));
    expect(err.code).to.equal('WEAVIATE_UNAVAILABLE');
    expect(err.details).to.include({ retryable: true });
    down = false;
    await clock.advance(200);
    expect(pool.availability()).to.deep.equal({ available: true });
    const lease = await pool.acquire();
    expect(lease.meta).to.deep.equal({ sessionId: 'sess-' + lease.resourceId });
  });

  it('validates idle resources in the cleanup and replaces one that died while idle', async () => {
    const { d, n } = counting(clock);
    const pool = mk(settings({ minSize: 2, initialSize: 2, maxSize: 2, sm: { validateOnReturn: true, cleanupIntervalMs: 1000 } }), d);
    await pool.start();
    const l = await pool.acquire();
    await pool.exec(l.leaseId, 'info', {}, () => {});
    const victim = l.resourceId;
    // Kill it while leased without anyone noticing at return (validated within the skip window).
    await pool.exec(l.leaseId, 'kill', {}, () => {});
    (pool as any).cfg.sessionManagement.validateSkipWindowMs = 10_000;
    pool.release(l.leaseId);
    await settle();
    expect(pool.snapshot().resources.map((r) => r.id)).to.include(victim);
    await clock.advance(1000);
    expect(n.validate).to.be.at.least(2);
    expect(pool.snapshot().resources.map((r) => r.id)).to.not.include(victim);
    expect(pool.numbers()).to.include({ total: 2, idle: 2 });
  });

  it('validates a resource on return after a failed exec, even inside the skip window', async () => {
    const { d, n } = counting(clock);
    const pool = mk(settings({ minSize: 1, initialSize: 1, maxSize: 1, sm: { validateOnReturn: true, validateSkipWindowMs: 60_000 } }), d);
    await pool.start();
    const l = await pool.acquire();
    await pool.exec(l.leaseId, 'kill', {}, () => {});
    const failed = await rejection(pool.exec(l.leaseId, 'fail', { message: 'crashed mid-turn' }, () => {}));
    expect(failed.code).to.equal('DRIVER_ERROR');
    pool.release(l.leaseId);
    await settle(); await settle();
    expect(n.validate).to.equal(1);
    expect(n.destroy).to.equal(1);
    expect(n.create).to.equal(2);
  });

  it('never sheds below the target when leased resources were destroyed for other reasons after a scale-down', async () => {
    const { d } = counting(clock);
    const pool = mk(settings({ minSize: 2, initialSize: 5, maxSize: 5 }), d);
    await pool.start();
    const held = await Promise.all([0, 1, 2, 3, 4].map(() => pool.acquire()));
    pool.scale('target', 2);
    for (const l of held.slice(0, 3)) pool.release(l.leaseId, { destroy: true });
    await settle(); await settle();
    for (const l of held.slice(3)) pool.release(l.leaseId);
    await settle(); await settle();
    expect(pool.numbers()).to.include({ total: 2, idle: 2 });
  });

  it('hands a released resource on only after an exec the driver was slow to stop has stopped', async () => {
    const { d } = counting(clock);
    // An exec that ignores its abort signal and ends 1 s later.
    const stubborn: Driver<any> = { ...d, exec: (r, op, args, ctx) => (op === 'stubborn' ? new Promise((res) => clock.setTimeout(() => res('late'), 1000)) : d.exec(r, op, args, ctx)) };
    const pool = mk(settings({ minSize: 1, initialSize: 1, maxSize: 1 }), stubborn);
    await pool.start();
    const l = await pool.acquire();
    const running = rejection(pool.exec(l.leaseId, 'stubborn', {}, () => {}));
    let next: Lease | undefined;
    const waiter = pool.acquire({ timeoutMs: 5000 }).then((x) => { next = x; });
    pool.release(l.leaseId);
    expect((await running).code).to.equal('CANCELLED');
    await clock.advance(500);
    expect(next).to.equal(undefined);
    await clock.advance(600);
    await waiter;
    expect(next!.resourceId).to.equal(l.resourceId);
  });

  it('drains: waiters and new acquires get NODE_DRAINING, leases finish, then everything is destroyed', async () => {
    const { d, n } = counting(clock);
    const pool = mk(settings({ minSize: 1, initialSize: 2, maxSize: 2 }), d);
    await pool.start();
    const a = await pool.acquire();
    const b = await pool.acquire();
    const waiter = rejection(pool.acquire({ timeoutMs: 10_000 }));
    const drained = pool.drain(5000);
    expect((await waiter).code).to.equal('NODE_DRAINING');
    expect((await rejection(pool.acquire())).code).to.equal('NODE_DRAINING');
    pool.release(a.leaseId);
    await clock.advance(100);
    expect(pool.numbers().active).to.equal(1);
    await clock.advance(5000);
    const { revoked } = await drained;
    expect(revoked).to.equal(1);
    expect(() => pool.release(b.leaseId)).to.throw().with.property('code', 'LEASE_NOT_FOUND');
    expect(n.destroy).to.equal(2);
    expect(pool.numbers().total).to.equal(0);
  });

  it('restarted after a drain, the pool probes its backend again', async () => {
    const { d } = counting(clock);
    let probes = 0;
    d.probe = async () => { probes++; return { ok: true }; };
    const pool = mk({ ...settings({ maxSize: 1 }), probeIntervalMs: 1000 }, d);
    await pool.start();
    await clock.advance(1000);
    expect(probes).to.equal(1);
    await pool.drain(0);
    expect(pool.undrain()).to.equal('restarted');
    const before = probes;
    await clock.advance(3000);
    expect(probes - before).to.be.at.least(2);
  });

  it('restarted after a drain, a create backoff cut short by the drain does not block warming up', async () => {
    const { d, n } = counting(clock);
    const create = d.create;
    let fail = 1;
    d.create = async (ctx) => { if (fail-- > 0) throw new Error('first create fails'); return create(ctx); };
    const pool = mk(settings({ minSize: 1, initialSize: 1, maxSize: 1, cr: { retryBaseMs: 5000, retryMaxMs: 5000 } }), d, () => 0.99);
    await pool.start();
    expect(pool.numbers().total).to.equal(0);
    await pool.drain(0);
    expect(pool.undrain()).to.equal('restarted');
    await clock.advance(6000);
    await settle();
    expect(n.create).to.equal(1);
    expect(pool.numbers()).to.include({ total: 1, idle: 1 });
  });

  describe('parking (release with park: a context kept under a key)', () => {
    it('a parked resource comes back to an acquire with its key, not reset; without the key it is not handed out while there is room', async () => {
      const { d, n } = counting(clock);
      const pool = mk(settings({ maxSize: 2, sm: { contextReset: true } }), d);
      await pool.start();
      const a = await pool.acquire({});
      pool.release(a.leaseId, { park: 'conv-1' });
      await settle();
      expect(n.reset).to.equal(0);
      expect(pool.parkedKeys()).to.deep.equal(['conv-1']);
      const other = await pool.acquire({});
      expect(other.resourceId).to.not.equal(a.resourceId);
      const back = pool.claimParked('conv-1', {})!;
      expect(back.resourceId).to.equal(a.resourceId);
      expect(pool.parkedKeys()).to.deep.equal([]);
      expect(pool.claimParked('conv-1', {})).to.equal(undefined);
      pool.release(back.leaseId);
      pool.release(other.leaseId);
      await settle();
      expect(n.reset).to.equal(2);
    });

    it('under pressure (at max_size, a waiter) the oldest parked resource is reset and handed over; its key then misses', async () => {
      const { d, n } = counting(clock);
      const pool = mk(settings({ maxSize: 2 }), d);
      await pool.start();
      const a = await pool.acquire({});
      const b = await pool.acquire({});
      pool.release(a.leaseId, { park: 'old' });
      await settle();
      await clock.advance(10);
      pool.release(b.leaseId, { park: 'new' });
      await settle();
      expect(pool.parkedKeys()).to.deep.equal(['old', 'new']);
      const c = await pool.acquire({ timeoutMs: 1000 });
      expect(c.resourceId).to.equal(a.resourceId);
      expect(n.reset).to.equal(1);
      expect(pool.parkedKeys()).to.deep.equal(['new']);
      expect(pool.claimParked('old', {})).to.equal(undefined);
      pool.release(c.leaseId);
    });

    it('max_parked: parking one more evicts the oldest; park_ttl: the cleanup evicts an unclaimed one', async () => {
      const { d, n } = counting(clock);
      const pool = mk(settings({ maxSize: 4, sm: { maxParked: 2, parkTtlMs: 5000, cleanupIntervalMs: 1000 } }), d);
      await pool.start();
      const ls = [await pool.acquire({}), await pool.acquire({}), await pool.acquire({})];
      ls.forEach((l, i) => pool.release(l.leaseId, { park: `k${i}` }));
      await settle();
      expect(pool.parkedKeys()).to.deep.equal(['k1', 'k2']);
      expect(n.reset).to.equal(1);
      expect(pool.numbers().idle).to.equal(3); // 1 idle + 2 parked: parked is idle capacity
      await clock.advance(6000);
      await settle();
      expect(pool.parkedKeys()).to.deep.equal([]);
      expect(n.reset).to.equal(3);
      expect(pool.numbers().idle).to.equal(3);
    });

    it('parking a key already parked replaces the older resource (reset, back to idle) and keeps the new one parked: nothing leaks', async () => {
      const { d, n } = counting(clock);
      const pool = mk(settings({ maxSize: 2 }), d);
      await pool.start();
      const a = await pool.acquire({});
      const b = await pool.acquire({});
      pool.release(a.leaseId, { park: 'conv' });
      await settle();
      pool.release(b.leaseId, { park: 'conv' });
      await settle();
      expect(pool.parkedKeys()).to.deep.equal(['conv']);
      expect(n.reset).to.equal(1);
      expect(pool.numbers()).to.include({ total: 2, idle: 2, active: 0 });
      // The key claims the newer context; the older one is ordinary capacity.
      const back = pool.claimParked('conv', {})!;
      expect(back.resourceId).to.equal(b.resourceId);
      const other = await pool.acquire({ timeoutMs: 1000 });
      expect(other.resourceId).to.equal(a.resourceId);
      pool.release(back.leaseId);
      pool.release(other.leaseId);
      await settle();
      expect(pool.numbers()).to.include({ total: 2, idle: 2 });
      expect(n.create).to.equal(2);
    });

    it('a keyed acquire while its resource is still returning to park (validate on return) waits for it: a hit, not a miss', async () => {
      const { d, n } = counting(clock, { validate_latency: 500 });
      const pool = mk(settings({ maxSize: 2, sm: { validateOnReturn: true } }), d);
      await pool.start();
      const a = await pool.acquire({});
      pool.release(a.leaseId, { park: 'conv' });
      // The release is answered; the return (a 500 ms validation) is not over: not parked yet.
      expect(pool.claimParked('conv', {})).to.equal(undefined);
      let got: Lease | undefined | 'pending' = 'pending';
      void pool.parkedSoon('conv', { timeoutMs: 5000 }).then((l) => { got = l; });
      // A second keyed acquire for the same key gets undefined (a miss) once the first has it.
      let second: Lease | undefined | 'pending' = 'pending';
      void pool.parkedSoon('conv', { timeoutMs: 5000 }).then((l) => { second = l; });
      await clock.advance(499);
      expect(got).to.equal('pending');
      await clock.advance(1);
      await settle();
      expect((got as unknown as Lease).resourceId).to.equal(a.resourceId);
      expect(second).to.equal(undefined);
      expect(n.reset).to.equal(0);
      expect(pool.parkedKeys()).to.deep.equal([]);
      // Nothing returning under a key: undefined at once.
      expect(await pool.parkedSoon('other', {})).to.equal(undefined);
    });

    it('a keyed acquire waiting for a return that does not park (invalid on return) gets undefined; one that outlasts its deadline gets POOL_TIMEOUT', async () => {
      const { d } = counting(clock, { validate_latency: 500 });
      const pool = mk(settings({ maxSize: 2, sm: { validateOnReturn: true } }), d);
      await pool.start();
      const a = await pool.acquire({});
      const b = await pool.acquire({});
      pool.release(a.leaseId, { park: 'late' });
      const timedOut = rejection(pool.parkedSoon('late', { timeoutMs: 100 }));
      await clock.advance(100);
      expect((await timedOut).code).to.equal('POOL_TIMEOUT');
      await clock.advance(400);
      await settle();
      expect(pool.parkedKeys()).to.deep.equal(['late']);
      // A release with the key that asks for a destroy parks nothing and names nothing: the context
      // parked under the key is neither replaced nor hidden behind a return, and is claimable at once.
      pool.release(b.leaseId, { park: 'late', destroy: true });
      const again = pool.claimParked('late', {});
      expect(again?.resourceId).to.equal(a.resourceId);
      pool.release(again!.leaseId, { park: 'late' });
      await clock.advance(500);
      expect(pool.parkedKeys()).to.deep.equal(['late']);
      // Released with the key while it is reset for invalidity: a waiter hears once it is settled.
      const c = await pool.acquire({ timeoutMs: 1000 });
      (pool as unknown as { driver: Driver<any> }).driver.validate = async () => { await new Promise<void>((r) => clock.setTimeout(() => r(), 500)); return false; };
      pool.release(c.leaseId, { park: 'bad' });
      let got: Lease | undefined | 'pending' = 'pending';
      void pool.parkedSoon('bad', { timeoutMs: 5000 }).then((l) => { got = l; });
      await clock.advance(500);
      await settle();
      expect(got).to.equal(undefined);
      expect(pool.parkedKeys()).to.deep.equal(['late']);
    });

    it('at max_size with a non-keyed waiter queued, a keyed acquire waiting for the return gets the parked resource first (not reset for the waiter)', async () => {
      const { d, n } = counting(clock, { validate_latency: 100 });
      const pool = mk(settings({ maxSize: 1, sm: { validateOnReturn: true } }), d);
      await pool.start();
      const a = await pool.acquire({});
      pool.release(a.leaseId, { park: 'conv' });
      let keyed: Lease | undefined | 'pending' = 'pending';
      void pool.parkedSoon('conv', { timeoutMs: 5000 }).then((l) => { keyed = l; });
      let plain: Lease | undefined;
      void pool.acquire({ timeoutMs: 5000 }).then((l) => { plain = l; });
      await clock.advance(100);
      // Parked and at once claimed by the key's waiter: the pressure relief that follows finds nothing parked.
      expect((keyed as unknown as Lease).resourceId).to.equal(a.resourceId);
      expect(n.reset).to.equal(0);
      expect(plain).to.equal(undefined);
      expect(pool.numbers()).to.include({ waiting: 1, active: 1 });
      pool.release((keyed as unknown as Lease).leaseId);
      await clock.advance(100);
      expect(plain!.resourceId).to.equal(a.resourceId);
    });

    it('two releases of the same key: the newer context is the one parked, even when the older return ends last', async () => {
      const { d, n } = counting(clock);
      const pool = mk(settings({ maxSize: 2, sm: { validateOnReturn: true } }), d);
      await pool.start();
      const a = await pool.acquire({});
      const b = await pool.acquire({});
      d.validate = async (r: { id: string }) => { await wait(r.id === a.resourceId ? 500 : 100); return true; };
      pool.release(a.leaseId, { park: 'conv' });
      await clock.advance(10);
      pool.release(b.leaseId, { park: 'conv' });
      await clock.advance(600);
      expect(pool.parkedKeys()).to.deep.equal(['conv']);
      expect(pool.claimParked('conv', {})?.resourceId).to.equal(b.resourceId);
      // The older one is ordinary capacity, reset (and validated again).
      expect(n.reset).to.equal(1);
      await clock.advance(500);
      expect(pool.numbers()).to.include({ idle: 1, active: 1 }); // the newer one was claimed above
      expect((await pool.acquire({ timeoutMs: 1000 })).resourceId).to.equal(a.resourceId);
    });

    it('a keyed acquire does not take the key\'s older parked context while a newer release of the key is returning: it waits for the newer', async () => {
      const { d, n } = counting(clock, { validate_latency: 500 });
      const pool = mk(settings({ maxSize: 2, sm: { validateOnReturn: true } }), d);
      await pool.start();
      const a = await pool.acquire({});
      const b = await pool.acquire({});
      pool.release(a.leaseId, { park: 'conv' });
      await clock.advance(500);
      expect(pool.parkedKeys()).to.deep.equal(['conv']);
      pool.release(b.leaseId, { park: 'conv' });
      expect(pool.claimParked('conv', {})).to.equal(undefined);
      let got: Lease | undefined | 'pending' = 'pending';
      void pool.claimKeyed('conv', { timeoutMs: 5000 }).then(({ lease }) => { got = lease; });
      await clock.advance(499);
      expect(got).to.equal('pending');
      await clock.advance(1);
      expect((got as unknown as Lease).resourceId).to.equal(b.resourceId);
      expect(n.reset).to.equal(1); // the older context, at the newer release
    });

    it('a keyed acquire waiting for a return moves to a newer release of the key, and its deadline goes with it', async () => {
      const { d, n } = counting(clock, { validate_latency: 500 });
      const pool = mk(settings({ maxSize: 2, sm: { validateOnReturn: true } }), d);
      await pool.start();
      const a = await pool.acquire({});
      const b = await pool.acquire({});
      pool.release(a.leaseId, { park: 'conv' });
      const short = rejection(pool.parkedSoon('conv', { timeoutMs: 300 }));
      let long: Lease | undefined | 'pending' = 'pending';
      void pool.parkedSoon('conv', { timeoutMs: 5000 }).then((l) => { long = l; });
      await clock.advance(100);
      pool.release(b.leaseId, { park: 'conv' });
      await clock.advance(200);
      expect((await short).code).to.equal('POOL_TIMEOUT');
      await clock.advance(200); // t=500: the older return is over, and parks nothing
      expect(long).to.equal('pending');
      expect(pool.parkedKeys()).to.deep.equal([]);
      await clock.advance(100); // t=600: the newer one parks and goes to the waiter
      expect((long as unknown as Lease).resourceId).to.equal(b.resourceId);
      expect(n.reset).to.equal(1);
      await clock.advance(1000); // the older one's second validation, after its reset
      expect(pool.numbers()).to.include({ idle: 1, active: 1 });
      expect(clock.pending).to.equal(1); // the lease's TTL only: no waiter's timer left behind
    });

    it('a return that settles after the same resource was claimed and released with the key again does not settle the newer release', async () => {
      const { d } = counting(clock, { validate_latency: 100 });
      const pool = mk(settings({ maxSize: 1, sm: { validateOnReturn: true } }), d);
      await pool.start();
      const a = await pool.acquire({});
      pool.release(a.leaseId, { park: 'conv' });
      let second: Lease | undefined | 'pending' = 'pending';
      // The waiter gets it as it parks and releases it with the key again before that first return has finished settling.
      void pool.parkedSoon('conv', { timeoutMs: 5000 }).then((l) => {
        pool.release(l!.leaseId, { park: 'conv' });
        void pool.parkedSoon('conv', { timeoutMs: 5000 }).then((l2) => { second = l2; });
      });
      await clock.advance(100);
      expect(second).to.equal('pending');
      await clock.advance(100);
      expect((second as unknown as Lease).resourceId).to.equal(a.resourceId);
    });

    it('close and drain refuse keyed acquires waiting for a return at once (NODE_DRAINING), leaving no timer', async () => {
      const { d } = counting(clock, { validate_latency: 500 });
      const pool = mk(settings({ maxSize: 2, sm: { validateOnReturn: true } }), d);
      await pool.start();
      const a = await pool.acquire({});
      const b = await pool.acquire({});
      pool.release(a.leaseId, { park: 'conv' });
      let closed: string | undefined;
      pool.parkedSoon('conv', { timeoutMs: 5000 }).then(() => { closed = 'resolved'; }, (e: ShoalError) => { closed = e.code; });
      const drained = pool.drain(1000);
      await settle();
      expect(closed).to.equal('NODE_DRAINING');
      pool.release(b.leaseId);
      await clock.advance(1000);
      await drained;

      const pool2 = mk(settings({ maxSize: 1, sm: { validateOnReturn: true } }), d);
      await pool2.start();
      const c = await pool2.acquire({});
      pool2.release(c.leaseId, { park: 'conv' });
      const before = clock.pending;
      let closed2: string | undefined;
      pool2.parkedSoon('conv', { timeoutMs: 5000 }).then(() => { closed2 = 'resolved'; }, (e: ShoalError) => { closed2 = e.code; });
      expect(clock.pending).to.equal(before + 1);
      await pool2.close();
      expect(closed2).to.equal('NODE_DRAINING');
      // The waiter's deadline timer went with it (the return's validation still runs out on its own).
      expect(clock.pending).to.equal(before);
    });

    it('the acquire deadline is shared: a return that takes 0.9 of it and does not park leaves the fresh acquire only the rest (POOL_TIMEOUT at 1.0)', async () => {
      const { d } = counting(clock, { create_latency: 500 });
      const pool = mk(settings({ maxSize: 1, initialSize: 1, sm: { validateOnReturn: true } }), d);
      const started = pool.start();
      await clock.advance(500);
      await started;
      const a = await pool.acquire({});
      d.validate = async () => { await wait(900); return false; };
      pool.release(a.leaseId, { park: 'conv' });
      const t0 = clock.now();
      let outcome: string | undefined;
      let at = 0;
      // As the node does it: the key first, then a fresh acquire with what is left.
      void pool.claimKeyed('conv', { timeoutMs: 1000 })
        .then(({ lease, rest }) => lease ?? pool.acquire(rest))
        .then(() => { outcome = 'granted'; }, (e: ShoalError) => { outcome = e.code; })
        .finally(() => { at = clock.now() - t0; });
      await clock.advance(1000);
      expect(outcome).to.equal('POOL_TIMEOUT');
      expect(at).to.be.at.most(1000);
      await clock.advance(500); // the replacement lands, idle
      expect(pool.numbers()).to.include({ total: 1, idle: 1, waiting: 0 });
    });

    it('max_parked 0 turns parking off: a park release is an ordinary release', async () => {
      const { d, n } = counting(clock);
      const pool = mk(settings({ maxSize: 1, sm: { maxParked: 0, contextReset: true } }), d);
      await pool.start();
      const a = await pool.acquire({});
      pool.release(a.leaseId, { park: 'x' });
      await settle();
      expect(pool.parkedKeys()).to.deep.equal([]);
      expect(n.reset).to.equal(1);
    });
  });
});
