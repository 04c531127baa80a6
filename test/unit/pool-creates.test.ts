import { expect } from 'chai';
import { Pool, syntheticDriver, type Driver, type PoolSettings } from '@shoal/pool-node';
import { FakeClock, seeded } from '../helpers/fake-clock.js';

function settings(over: Partial<PoolSettings>): PoolSettings {
  return {
    name: 'p', minSize: 0, maxSize: 10_000, initialSize: 0, maxWaitingClients: 100, acquireTimeoutMs: 1000, leaseTtlMs: 60_000, weight: 1,
    sessionManagement: { enableReuse: true, idleTimeoutMs: 0, maxLifetimeMs: 0, lifetimeJitter: 0, maxReuseCount: 0, contextReset: false, cleanupIntervalMs: 0, validateOnReturn: false, validateSkipWindowMs: 0, maxParked: 0, parkTtlMs: 0 },
    create: { timeoutMs: 5000, retryBaseMs: 100, retryMaxMs: 10_000 },
    resourceLimits: { maxMemoryPerSessionBytes: 0, maxTotalMemoryBytes: 0 },
    ...over,
  };
}

/** Counts creates in flight and remembers the most seen at once. */
function gauge(clock: FakeClock) {
  const inner = syntheticDriver({ clock, random: seeded(), options: { create_latency: 100 }, poolName: 'p' }) as Driver<any>;
  const g = { now: 0, peak: 0, started: 0 };
  const d: Driver<any> = {
    ...inner,
    create: async (ctx) => {
      g.now++; g.started++; g.peak = Math.max(g.peak, g.now);
      try { return await inner.create(ctx); } finally { g.now--; }
    },
  };
  return { d, g };
}

describe('Pool creates are bounded (unit, fake clock)', () => {
  let clock: FakeClock;
  const pools: Pool[] = [];
  beforeEach(() => { clock = new FakeClock(); });
  afterEach(async () => { for (const p of pools.splice(0)) await p.close(); });
  const mk = (s: PoolSettings, d: Driver<any>) => { const p = new Pool(s, d, clock, seeded()); pools.push(p); return p; };

  it('never has more than max_concurrent_creates in flight, whatever the target, and the scale reply tells ready from creating', async () => {
    const { d, g } = gauge(clock);
    const pool = mk(settings({ maxConcurrentCreates: 4 }), d);
    await pool.start();
    const r = pool.scale('target', 50);
    expect(r).to.deep.equal({ target: 50, total: 4, ready: 0, creating: 4 });
    await clock.advance(100);
    const r2 = pool.scale('target', 50);
    expect(r2).to.deep.equal({ target: 50, total: 8, ready: 4, creating: 4 });
    await clock.advance(2000);
    expect(pool.numbers()).to.include({ total: 50, idle: 50, creating: 0 });
    expect(g.peak).to.equal(4);
    expect(g.started).to.equal(50);
  });

  it('warms up max_concurrent_creates at a time and resolves start() when warm', async () => {
    const { d, g } = gauge(clock);
    const pool = mk(settings({ initialSize: 10, maxConcurrentCreates: 3 }), d);
    let warm = false;
    const started = pool.start().then(() => { warm = true; });
    await clock.advance(300);
    expect(warm).to.equal(false);
    await clock.advance(100);
    await started;
    expect(pool.numbers()).to.include({ total: 10, idle: 10 });
    expect(g.peak).to.equal(3);
  });

  it('starts at most 64 creates per turn of the event loop, the rest on the next turns', async () => {
    const { d, g } = gauge(clock);
    const pool = mk(settings({ maxConcurrentCreates: 10_000 }), d);
    await pool.start();
    expect(pool.scale('target', 1000).creating).to.equal(64);
    expect(g.started).to.equal(64);
    // Each further chunk is its own timer callback (a turn of the event loop with the real clock).
    await clock.advance(0);
    expect(g.started).to.equal(1000);
    await clock.advance(100);
    expect(pool.numbers()).to.include({ total: 1000, idle: 1000 });
  });

  it('defaults by driver kind: synthetic 64', async () => {
    const { d } = gauge(clock);
    const pool = mk(settings({}), d);
    expect(pool.maxConcurrentCreates).to.equal(64);
  });
});
