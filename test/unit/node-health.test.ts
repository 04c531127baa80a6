import { expect } from 'chai';
import { encode, type HealthVerdict } from '@shoal/protocol';
import { silentLogger } from '@shoal/runtime';
import type { Driver } from '../../services/pool-node/src/driver.js';
import { syntheticDriver } from '../../services/pool-node/src/drivers/synthetic.js';
import { Pool, type PoolSettings } from '../../services/pool-node/src/pool.js';
import { NodeHealth } from '../../services/pool-node/src/health.js';
import { FakeClock, seeded } from '../helpers/fake-clock.js';

const settings: PoolSettings = {
  name: 'p', minSize: 1, maxSize: 2, initialSize: 1, maxWaitingClients: 10, acquireTimeoutMs: 1000, leaseTtlMs: 60_000, weight: 1,
  sessionManagement: { enableReuse: true, idleTimeoutMs: 0, maxLifetimeMs: 0, lifetimeJitter: 0, maxReuseCount: 0, contextReset: false, cleanupIntervalMs: 0, validateOnReturn: false, validateSkipWindowMs: 0, maxParked: 0, parkTtlMs: 0 },
  create: { timeoutMs: 5000, retryBaseMs: 100, retryMaxMs: 1000 },
  resourceLimits: { maxMemoryPerSessionBytes: 0, maxTotalMemoryBytes: 0 },
};
const verdict = (o: Partial<HealthVerdict>): HealthVerdict => ({ v: 1, nodeId: 'n1', healthy: false, at: 100, since: 100, checkerId: 'c', reason: 'memory_usage: too big', checks: [], pools: {}, ...o });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('NodeHealth (the node\'s side: probe answers, self-drain)', () => {
  const pools: Pool[] = [];
  afterEach(async () => { for (const p of pools.splice(0)) await p.close(); });

  async function setup(driver?: (d: Driver<any>) => Driver<any>) {
    const clock = new FakeClock();
    const inner = syntheticDriver({ clock, random: seeded(), options: {}, poolName: 'p' }) as Driver<any>;
    const d = driver ? driver(inner) : inner;
    const pool = new Pool(settings, d, clock, seeded());
    pools.push(pool);
    await pool.start();
    return { pool, d };
  }

  it('probe: validates one idle resource per pool, reports memory, the limit and the backend', async () => {
    let validated = 0;
    const { pool, d } = await setup((inner) => ({ ...inner, validate: async (r) => { validated++; return inner.validate(r); } }));
    const h = new NodeHealth('n1', new Map([['p', pool]]), new Map([['p', d]]), { memoryLimitBytes: 1 << 30, drainAfterMs: 0, drain: () => {} }, silentLogger);
    const r = await h.probe();
    expect(validated).to.equal(1);
    expect(r).to.include({ nodeId: 'n1', memoryLimitBytes: 1 << 30 });
    expect(r.rssBytes).to.be.greaterThan(0);
    expect(r.pools.p).to.include({ valid: true, healthy: true });
    expect(r.pools.p!.ms).to.be.a('number');
  });

  it('probe: a backend the driver knows is down is reported with its reason, and not validated', async () => {
    let validated = 0;
    const { pool, d } = await setup((inner) => ({ ...inner, validate: async (r) => { validated++; return inner.validate(r); }, backend: () => ({ healthy: false, reason: 'Weaviate at x unreachable' }) }));
    const h = new NodeHealth('n1', new Map([['p', pool]]), new Map([['p', d]]), { drainAfterMs: 0, drain: () => {} }, silentLogger);
    const r = await h.probe();
    expect(r.pools.p).to.deep.equal({ healthy: false, reason: 'Weaviate at x unreachable' });
    expect(validated).to.equal(0);
    expect(h.memoryLimitBytes).to.be.greaterThan(0); // the cgroup's or the machine's
  });

  it('drains itself after drain_after of unhealthy verdicts; a healthy verdict in between cancels; older, foreign or bad verdicts change nothing', async () => {
    const { pool, d } = await setup();
    const drains: string[] = [];
    const h = new NodeHealth('n1', new Map([['p', pool]]), new Map([['p', d]]), { drainAfterMs: 80, drain: (why) => drains.push(why) }, silentLogger);
    h.onVerdict(encode(verdict({ at: 100 })));
    await sleep(40);
    h.onVerdict(encode(verdict({ healthy: true, at: 200 })));
    await sleep(80);
    expect(drains).to.deep.equal([]);
    // Older than the one in force, about another node, or not a verdict: ignored.
    h.onVerdict(encode(verdict({ at: 150 })));
    h.onVerdict(encode(verdict({ nodeId: 'n2', at: 300 })));
    h.onVerdict(new Uint8Array([0xc1]));
    await sleep(100);
    expect(drains).to.deep.equal([]);
    h.onVerdict(encode(verdict({ at: 400 })));
    h.onVerdict(encode(verdict({ at: 500 }))); // refreshes do not restart the clock
    await sleep(150);
    expect(drains).to.have.length(1);
    expect(drains[0]).to.match(/unhealthy for 80 ms: memory_usage: too big/);
    h.stop();
  });

  it('drain_after 0: never drains', async () => {
    const { pool, d } = await setup();
    const drains: string[] = [];
    const h = new NodeHealth('n1', new Map([['p', pool]]), new Map([['p', d]]), { drainAfterMs: 0, drain: (why) => drains.push(why) }, silentLogger);
    h.onVerdict(encode(verdict({ at: 100 })));
    await sleep(50);
    expect(drains).to.deep.equal([]);
    expect(h.verdict?.healthy).to.equal(false);
  });
});
