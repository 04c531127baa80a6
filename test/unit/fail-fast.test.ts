import { expect } from 'chai';
import { Pool, syntheticDriver, type Driver, type PoolSettings } from '@shoal/pool-node';
import { ErrorCodes, ShoalError } from '@shoal/protocol';
import { retryRound, tryBudgetMs, MAX_BUDGET_MS, MIN_BUDGET_MS } from '../../services/balancer/src/tries.js';
import { turnError } from '../../services/pool-node/src/drivers/claude-cli/auth.js';
import { FakeClock, seeded, settle } from '../helpers/fake-clock.js';

function settings(over: Partial<PoolSettings> = {}): PoolSettings {
  return {
    name: 'w', minSize: 1, maxSize: 2, initialSize: 1, maxWaitingClients: 100, acquireTimeoutMs: 5000, leaseTtlMs: 60_000, weight: 1,
    sessionManagement: { enableReuse: true, idleTimeoutMs: 0, maxLifetimeMs: 0, lifetimeJitter: 0, maxReuseCount: 0, contextReset: false, cleanupIntervalMs: 0, validateOnReturn: false, validateSkipWindowMs: 0, maxParked: 0, parkTtlMs: 0 },
    create: { timeoutMs: 5000, retryBaseMs: 1000, retryMaxMs: 30_000 },
    resourceLimits: { maxMemoryPerSessionBytes: 0, maxTotalMemoryBytes: 0 },
    ...over,
  };
}

async function rejection(p: Promise<unknown>): Promise<ShoalError> {
  try { await p; } catch (err) { return err as ShoalError; }
  throw new Error('expected a rejection');
}

/** A backend that is up or down on command, with a probe that says which. */
function backend(clock: FakeClock) {
  const inner = syntheticDriver({ clock, random: seeded(), options: {}, poolName: 'w' }) as Driver<any>;
  const st = { up: false, creates: 0, probes: 0 };
  const down = () => new ShoalError(ErrorCodes.WEAVIATE_UNAVAILABLE, 'connect ECONNREFUSED 127.0.0.1:8080', { details: { retryable: true } });
  const d: Driver<any> = {
    ...inner,
    kind: 'weaviate',
    create: async (ctx) => { st.creates++; if (!st.up) throw down(); return inner.create(ctx); },
    exec: async (r, op, args, ctx) => { if (!st.up) throw down(); return inner.exec(r, op, args, ctx); },
    probe: async () => { st.probes++; return st.up ? { ok: true } : { ok: false, error: down() }; },
  };
  return { d, st };
}

describe('fail fast, heal fast (unit, fake clock)', () => {
  let clock: FakeClock;
  let pool: Pool | undefined;
  beforeEach(() => { clock = new FakeClock(); });
  afterEach(async () => { await pool?.close(); pool = undefined; });

  it('refuses acquires at once with the backend\'s retryable error while its creates fail, and serves again one probe after it is back, not one backoff', async () => {
    const { d, st } = backend(clock);
    pool = new Pool(settings({ probeIntervalMs: 1000 }), d, clock, () => 0.99);
    await pool.start();
    const err = await rejection(pool.acquire({ timeoutMs: 5000 }));
    expect(err.code).to.equal('WEAVIATE_UNAVAILABLE');
    expect(err.retryable).to.equal(true);
    expect(err.details).to.include({ backend: 'weaviate', cause: 'connect ECONNREFUSED 127.0.0.1:8080' });
    expect(err.message).to.contain('ECONNREFUSED');
    expect(pool.numbers().waiting).to.equal(0);
    // Let the backoff climb to retry_max (30 s), then bring the backend back.
    for (let i = 0; i < 8; i++) await clock.advance(30_000);
    const before = st.creates;
    st.up = true;
    await clock.advance(1000); // one probe interval
    await settle();
    expect(st.creates).to.be.greaterThan(before);
    const lease = await pool.acquire({ timeoutMs: 100 });
    expect(lease.pool).to.equal('w');
    expect(pool.availability()).to.deep.equal({ available: true });
  });

  it('a failed probe takes a pool with idle resources down; an op that finds the backend unreachable does too', async () => {
    const { d, st } = backend(clock);
    st.up = true;
    pool = new Pool(settings({ probeIntervalMs: 1000 }), d, clock);
    await pool.start();
    const l = await pool.acquire();
    st.up = false;
    const opErr = await rejection(pool.exec(l.leaseId, 'echo', {}, () => {}));
    expect(opErr.code).to.equal('WEAVIATE_UNAVAILABLE');
    pool.release(l.leaseId);
    await settle();
    expect((await rejection(pool.acquire())).code).to.equal('WEAVIATE_UNAVAILABLE');
    st.up = true;
    await clock.advance(1000);
    await settle();
    expect((await pool.acquire()).pool).to.equal('w');
    st.up = false;
    await clock.advance(1000);
    await settle();
    expect(pool.availability().available).to.equal(false);
    expect((await rejection(pool.acquire())).code).to.equal('WEAVIATE_UNAVAILABLE');
  });

  it('a driver error with nothing to lease becomes POOL_UNAVAILABLE naming the backend; a busy pool still times out (POOL_TIMEOUT)', async () => {
    const inner = syntheticDriver({ clock, random: seeded(), options: {}, poolName: 'w' }) as Driver<any>;
    let fail = true;
    const d: Driver<any> = { ...inner, create: async (ctx) => { if (fail) throw new ShoalError(ErrorCodes.DRIVER_ERROR, 'claude command not found'); return inner.create(ctx); } };
    pool = new Pool(settings({ minSize: 0, initialSize: 0, maxSize: 1 }), d, clock);
    const err = await rejection(pool.acquire({ timeoutMs: 1000 }));
    expect(err.code).to.equal('POOL_UNAVAILABLE');
    expect(err.details).to.include({ backend: 'synthetic', retryable: true });
    fail = false;
    for (let i = 0; i < 4 && !pool.availability().available; i++) await clock.advance(1000);
    const held = await pool.acquire({ timeoutMs: 1000 });
    const busy = rejection(pool.acquire({ timeoutMs: 500 }));
    await clock.advance(500);
    expect((await busy).code).to.equal('POOL_TIMEOUT');
    pool.release(held.leaseId);
  });

  it('a probe that cannot tell (or says up while creates still fail) costs one create per probe, not a storm, and still heals within an interval', async () => {
    const { d, st } = backend(clock);
    let says: boolean | undefined;
    const unsure: Driver<any> = { ...d, probe: async () => ({ ok: says }) };
    pool = new Pool(settings({ probeIntervalMs: 5000, create: { timeoutMs: 5000, retryBaseMs: 100, retryMaxMs: 30_000 } }), unsure, clock, () => 0.99);
    await pool.start();
    for (const s of [undefined, true]) {
      says = s;
      const before = st.creates;
      for (let t = 0; t < 60_000; t += 500) await clock.advance(500);
      // 60 s at a 5 s interval: about one create per probe (12) plus a few of the backoff's, not hundreds.
      expect(st.creates - before, `probe says ${String(s)}`).to.be.within(8, 20);
    }
    st.up = true;
    await clock.advance(5000);
    await settle();
    expect((await pool.acquire({ timeoutMs: 100 })).pool).to.equal('w');
  });

  it('announces leases that end without their holder (expired, revoked) and not released ones', async () => {
    const inner = syntheticDriver({ clock, random: seeded(), options: {}, poolName: 'w' }) as Driver<any>;
    const lost: [string, string][] = [];
    pool = new Pool(settings({ minSize: 0, initialSize: 0 }), inner, clock, Math.random, { op() {}, leaseExpired() {}, log() {}, leaseLost: (id, how) => lost.push([id, how]) });
    const a = await pool.acquire({ ttlMs: 100 });
    const b = await pool.acquire({ ttlMs: 60_000 });
    await clock.advance(100);
    expect(lost).to.deep.equal([[a.leaseId, 'expired']]);
    await pool.close();
    expect(lost).to.deep.equal([[a.leaseId, 'expired'], [b.leaseId, 'revoked']]);
    pool = undefined;
  });
});

describe('per-try budget and retry rounds (balancer, pure)', () => {
  it('derives the budget from the node\'s latency, within bounds', () => {
    expect(tryBudgetMs(undefined)).to.equal(MIN_BUDGET_MS);
    expect(tryBudgetMs(1)).to.equal(MIN_BUDGET_MS);
    expect(tryBudgetMs(100)).to.equal(450);
    expect(tryBudgetMs(10_000)).to.equal(MAX_BUDGET_MS);
    expect(tryBudgetMs(Number.NaN)).to.equal(MIN_BUDGET_MS);
  });
  it('does not go round again when the nodes said their backend is down', () => {
    expect(retryRound(undefined)).to.equal(true);
    expect(retryRound('POOL_BUSY')).to.equal(true);
    expect(retryRound('WEAVIATE_UNAVAILABLE')).to.equal(false);
    expect(retryRound('POOL_UNAVAILABLE')).to.equal(false);
  });
});

describe('claude turn results and retryable errors', () => {
  it('a result with is_error is a typed error carrying the line; not logged in is POOL_UNAVAILABLE with the fix; an interrupt is not a failure', () => {
    const notLogged = { type: 'result', subtype: 'success', is_error: true, result: 'Not logged in · Please run /login', session_id: 's' };
    const e1 = turnError(notLogged)!;
    expect(e1.code).to.equal('POOL_UNAVAILABLE');
    expect(e1.retryable).to.equal(true);
    expect(e1.details?.result).to.deep.equal(notLogged);
    expect(String(e1.details?.fix)).to.contain('ANTHROPIC_API_KEY');
    const api = turnError({ type: 'result', subtype: 'success', is_error: true, result: 'API Error: 529 overloaded', api_error_status: 529 })!;
    expect(api.code).to.equal('DRIVER_ERROR');
    expect(api.retryable).to.equal(true);
    const bad = turnError({ type: 'result', subtype: 'error_max_turns', is_error: true })!;
    expect(bad.retryable).to.equal(false);
    expect(turnError({ type: 'result', subtype: 'error_during_execution', is_error: true }, true)).to.equal(undefined);
    // The same subtype on a turn nobody interrupted: the CLI failed during execution.
    expect(turnError({ type: 'result', subtype: 'error_during_execution', is_error: true }, false)?.code).to.equal('DRIVER_ERROR');
    expect(turnError({ type: 'result', subtype: 'success', is_error: false, result: 'hi' })).to.equal(undefined);
  });
  it('every error says retryable on the wire, and a sender\'s own verdict survives the trip', () => {
    expect(new ShoalError('POOL_TIMEOUT', 'x').toWire().retryable).to.equal(true);
    expect(new ShoalError('BAD_REQUEST', 'x').toWire().retryable).to.equal(false);
    expect(new ShoalError('LEASE_LOST', 'x').retryable).to.equal(true);
    const w = new ShoalError('DRIVER_ERROR', 'x', { details: { retryable: true } }).toWire();
    expect(ShoalError.fromWire(w).retryable).to.equal(true);
    expect(ShoalError.fromWire({ code: 'DRIVER_ERROR', message: 'x', retryable: true }).retryable).to.equal(true);
  });
});
