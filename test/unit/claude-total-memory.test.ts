import { expect } from 'chai';
import { Pool, type Driver, type PoolSettings } from '@shoal/pool-node';
import { FakeClock, seeded } from '../helpers/fake-clock.js';

/**
 * The pool's max_total_memory recycling (the cleanup hook added for Claude
 * sessions): over the limit, the largest idle or parked resources are
 * destroyed until the sum is under it; leased ones are never touched;
 * creates stay refused while the sum is at the limit.
 */
interface Res { id: number; mem: number; dead: boolean }

function settings(maxTotal: number, size: number, sm: Partial<PoolSettings['sessionManagement']> = {}): PoolSettings {
  return {
    name: 'claude', minSize: size, maxSize: size, initialSize: size, maxWaitingClients: 100, acquireTimeoutMs: 1000, leaseTtlMs: 60_000, weight: 1,
    sessionManagement: { enableReuse: true, idleTimeoutMs: 0, maxLifetimeMs: 0, lifetimeJitter: 0, maxReuseCount: 0, contextReset: false, cleanupIntervalMs: 1000, validateOnReturn: false, validateSkipWindowMs: 0, maxParked: 16, parkTtlMs: 600_000, ...sm },
    create: { timeoutMs: 5000, retryBaseMs: 100, retryMaxMs: 1000 },
    resourceLimits: { maxMemoryPerSessionBytes: 0, maxTotalMemoryBytes: maxTotal },
  };
}

function driver() {
  let next = 0;
  const destroyed: number[] = [];
  const d: Driver<Res> = {
    kind: 'fake',
    async create() { return { id: next++, mem: 10, dead: false }; },
    async validate(r) { return !r.dead; },
    async reset() {},
    async exec() { return null; },
    async destroy(r) { r.dead = true; destroyed.push(r.id); },
    usage(r) { return { memoryBytes: r.mem }; },
  };
  return { d, destroyed };
}

describe('Pool max_total_memory recycling (unit, fake clock)', () => {
  it('destroys the largest idle resources until the total is under the limit, never a leased one, then refills', async () => {
    const clock = new FakeClock();
    const { d, destroyed } = driver();
    const pool = new Pool(settings(100, 4), d, clock, seeded());
    await pool.start();
    const leases = await Promise.all([0, 1, 2, 3].map(() => pool.acquire()));
    // Memory by resource: the leased one is the largest, then 50, 40, 10 idle.
    const res = (pool as unknown as { resources: Map<string, { handle: Res }> }).resources;
    [200, 50, 40, 10].forEach((mem, i) => { res.get(leases[i]!.resourceId)!.handle.mem = mem; });
    for (const l of leases.slice(1)) pool.release(l.leaseId);
    await clock.advance(10);
    expect(pool.numbers()).to.include({ idle: 3, active: 1 });
    await clock.advance(1000); // cleanup: total 300 > 100; the idle 50, 40, 10 go in that order (→ 200, still over); the leased 200 stays
    const left = pool.snapshot().resources.map((r) => r.id);
    expect(left).to.include(leases[0]!.resourceId);
    for (const l of leases.slice(1)) expect(left).to.not.include(l.resourceId);
    expect(destroyed).to.have.length(3);
    // Still over the limit with the leased one alone: no creates.
    expect(pool.numbers()).to.include({ total: 1, creating: 0 });
    // Once it shrinks, the pool refills to its size within the limit.
    res.get(leases[0]!.resourceId)!.handle.mem = 10;
    pool.release(leases[0]!.leaseId);
    await clock.advance(1000);
    await clock.advance(10);
    expect(pool.numbers()).to.include({ total: 4 });
    await pool.close();
  });

  it('recycles only down to the limit: the largest idle first', async () => {
    const clock = new FakeClock();
    const { d } = driver();
    const pool = new Pool(settings(100, 3), d, clock, seeded());
    await pool.start();
    const res = (pool as unknown as { resources: Map<string, { handle: Res }> }).resources;
    const ids = [...res.keys()];
    res.get(ids[0]!)!.handle.mem = 30;
    res.get(ids[1]!)!.handle.mem = 80;
    res.get(ids[2]!)!.handle.mem = 20;
    await clock.advance(1000); // 130 > 100: the 80 goes (→ 50), then a fresh one (10) is created: 60
    expect([...res.keys()]).to.include(ids[0]).and.include(ids[2]).and.not.include(ids[1]);
    await clock.advance(10);
    expect(pool.numbers()).to.include({ total: 3 });
    expect(pool.memoryBytes()).to.equal(60);
    await pool.close();
  });

  it('waits for a larger resource that is being validated instead of recycling a smaller idle one', async () => {
    const clock = new FakeClock();
    const { d, destroyed } = driver();
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    d.validate = async (r) => { if (r.mem > 50) await gate; return !r.dead; };
    const pool = new Pool(settings(100, 2), d, clock, seeded());
    await pool.start();
    const res = (pool as unknown as { resources: Map<string, { handle: Res; lastValidatedAt: number }> }).resources;
    const [big, small] = [...res.keys()];
    res.get(big!)!.handle.mem = 80;
    res.get(small!)!.handle.mem = 30;
    res.get(big!)!.lastValidatedAt = -1; // the health probe picks it
    const bigHandle = res.get(big!)!.handle;
    const probing = pool.probeIdle();
    await clock.advance(1000); // cleanup: 110 > 100, but the 80 is out being validated: the 30 stays
    expect(destroyed).to.deep.equal([]);
    expect([...res.keys()]).to.include(small);
    open();
    expect(await probing).to.equal(true);
    await clock.advance(1000); // the 80 is idle again: it goes, the 30 stays
    expect([...res.keys()]).to.include(small).and.not.include(big);
    expect(destroyed).to.deep.equal([bigHandle.id]);
    await pool.close();
  });

  it('recycles even when validation of every idle resource is due in the same cleanup (validate_on_return, no driver interval)', async () => {
    const clock = new FakeClock();
    const { d } = driver();
    const pool = new Pool(settings(100, 3, { validateOnReturn: true }), d, clock, seeded());
    await pool.start();
    const res = (pool as unknown as { resources: Map<string, { handle: Res }> }).resources;
    const [big, mid, small] = [...res.keys()];
    res.get(big!)!.handle.mem = 80;
    res.get(mid!)!.handle.mem = 30;
    res.get(small!)!.handle.mem = 20;
    // Every cleanup (1 s) finds all three due for validation (validated 1 s ago): the 80 must still go in the first one.
    await clock.advance(1000);
    expect([...res.keys()]).to.include(mid).and.include(small).and.not.include(big);
    await pool.close();
  });

  it('counts a parked resource as a candidate: the largest, parked, is evicted (its context dropped) rather than a smaller idle one', async () => {
    const clock = new FakeClock();
    const { d, destroyed } = driver();
    const pool = new Pool(settings(100, 3), d, clock, seeded());
    await pool.start();
    const res = (pool as unknown as { resources: Map<string, { handle: Res }> }).resources;
    const lease = await pool.acquire();
    const big = lease.resourceId;
    const [mid, small] = [...res.keys()].filter((id) => id !== big);
    res.get(big)!.handle.mem = 80;
    res.get(mid!)!.handle.mem = 30;
    res.get(small!)!.handle.mem = 20;
    const bigHandle = res.get(big)!.handle;
    pool.release(lease.leaseId, { park: 'conv' });
    await clock.advance(10);
    expect(pool.parkedKeys()).to.deep.equal(['conv']);
    await clock.advance(1000); // 130 > 100: the parked 80 goes (→ 50); the 30 and 20 stay
    expect(destroyed).to.deep.equal([bigHandle.id]);
    expect([...res.keys()]).to.include(mid).and.include(small).and.not.include(big);
    expect(pool.parkedKeys()).to.deep.equal([]);
    expect(pool.claimParked('conv')).to.equal(undefined);
    await pool.close();
  });

  it('a parked resource the same cleanup evicts for park_ttl does not defer recycling: the largest goes in that cleanup', async () => {
    const clock = new FakeClock();
    const { d, destroyed } = driver();
    const pool = new Pool(settings(100, 3, { parkTtlMs: 500 }), d, clock, seeded());
    await pool.start();
    const res = (pool as unknown as { resources: Map<string, { handle: Res }> }).resources;
    const lease = await pool.acquire();
    const big = lease.resourceId;
    const [mid, small] = [...res.keys()].filter((id) => id !== big);
    res.get(big)!.handle.mem = 80;
    res.get(mid!)!.handle.mem = 30;
    res.get(small!)!.handle.mem = 20;
    const bigHandle = res.get(big)!.handle;
    pool.release(lease.leaseId, { park: 'conv' });
    await clock.advance(1000); // the cleanup: the parked 80 is past park_ttl and the largest: destroyed, not reset
    expect(destroyed).to.deep.equal([bigHandle.id]);
    expect([...res.keys()]).to.include(mid).and.include(small);
    await pool.close();
  });
});
