import { expect } from 'chai';
import type { Heartbeat, PoolStats } from '@shoal/protocol';
import { tierOf, type Tier } from '../../services/balancer/src/candidate-index.js';
import { Membership, SAMPLE_SIZE } from '../../services/balancer/src/membership.js';
import { createStrategy, STRATEGY_NAMES } from '../../services/balancer/src/strategies/index.js';

/** Small seeded PRNG (mulberry32), so a failing sequence can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function stats(o: Partial<PoolStats>): PoolStats {
  return {
    kind: 'synthetic', total: 0, idle: 0, active: 0, creating: 0, waiting: 0, min: 0, max: 4, target: 0,
    maxWaiting: 10, weight: 1, latencyMs: 1, execLatencyMs: 1, errorRate: 0, requestRate: 0, reuseRate: 0, memoryBytes: 0, available: true, ...o,
  };
}

const INTERVAL = 1000;

/** The model: what a full scan says the index should hold, from what the test did. */
interface ModelNode { hb: Heartbeat; heardAt: number; inFlight: number; unseen: number; suspect: boolean }

describe('candidate index', () => {
  it('tierOf: spare idle, else room to create, else full', () => {
    expect(tierOf({ idle: 2, total: 2, creating: 0, waiting: 0, max: 2, inFlight: 1 })).to.equal(0);
    expect(tierOf({ idle: 2, total: 2, creating: 0, waiting: 0, max: 2, inFlight: 2 })).to.equal(2);
    expect(tierOf({ idle: 0, total: 1, creating: 0, waiting: 0, max: 3, inFlight: 1 })).to.equal(1);
    expect(tierOf({ idle: 0, total: 1, creating: 1, waiting: 1, max: 3, inFlight: 0 })).to.equal(2);
    expect(tierOf({ idle: 0, total: 0, creating: 0, waiting: 0, max: 0, inFlight: 0 })).to.equal(2);
    expect(tierOf({ idle: 3, total: 3, creating: 0, waiting: 0, max: 4, inFlight: 0, available: false })).to.equal(2);
  });

  for (const seed of [1, 2, 3, 4, 5, 6]) {
    it(`equals a full scan under a random heartbeat sequence (seed ${seed})`, () => {
      const rand = prng(seed);
      const int = (n: number) => Math.floor(rand() * n);
      const m = new Membership();
      const model = new Map<string, ModelNode>();
      const weights = new Map<string, number>();
      const unhealthy = new Set<string>();
      const ids = Array.from({ length: 24 }, (_, i) => `n${i}`);
      let now = 0;

      const expected = (pool: string): Map<string, Tier> => {
        const out = new Map<string, Tier>();
        for (const [id, n] of model) {
          const s = n.hb.pools[pool];
          if (!s || n.suspect || n.hb.draining || unhealthy.has(id)) continue;
          if ((weights.get(id) ?? s.weight) <= 0) continue;
          out.set(id, tierOf({ ...s, inFlight: n.inFlight }));
        }
        return out;
      };

      for (let step = 0; step < 2000; step++) {
        const id = ids[int(ids.length)]!;
        const known = model.get(id);
        const op = rand();
        if (op < 0.45) {
          // A heartbeat: sometimes a restart, sometimes a stale (reordered) one.
          const restart = known !== undefined && rand() < 0.05;
          const stale = known !== undefined && !restart && rand() < 0.05;
          const pools: Record<string, PoolStats> = {};
          for (const p of ['p', 'q']) {
            if (rand() < 0.75) {
              const max = int(6);
              const total = int(max + 1);
              pools[p] = stats({ max, total, idle: int(total + 1), creating: int(max - total + 1), waiting: int(3), weight: rand() < 0.1 ? 0 : 1, available: rand() > 0.1 });
            }
          }
          const hb = {
            v: 1, nodeId: id, host: 'h', pid: ids.indexOf(id) + 1, intervalMs: INTERVAL, draining: rand() < 0.1,
            startedAt: (known?.hb.startedAt ?? 1) + (restart ? 1 : 0), seq: stale ? known.hb.seq - 1 : restart ? 1 : (known?.hb.seq ?? 0) + 1,
            inFlight: 0, maxConcurrent: 0, cpu: 0, memory: { rss: 0, heapUsed: 0 }, pools,
          } as Heartbeat;
          const r = m.observe(hb, now);
          if (stale) {
            expect(r.kind).to.equal('stale');
          } else {
            model.set(id, { hb, heardAt: now, inFlight: restart ? 0 : known?.inFlight ?? 0, unseen: 0, suspect: false });
          }
        } else if (op < 0.6) {
          m.placed(id);
          if (known) known.inFlight++;
        } else if (op < 0.68) {
          m.settled(id);
          if (known && known.inFlight > 0) known.inFlight--;
        } else if (op < 0.75) {
          m.granted(id);
          if (known && known.inFlight > 0) { known.inFlight--; known.unseen++; }
        } else if (op < 0.8) {
          const w = [0, 1, 2, undefined][int(4)];
          m.setWeight(id, w);
          if (w === undefined) weights.delete(id);
          else weights.set(id, w);
        } else if (op < 0.85) {
          const bad = rand() < 0.5;
          m.markUnhealthy(id, bad);
          if (bad) unhealthy.add(id);
          else unhealthy.delete(id);
        } else if (op < 0.95) {
          now += int(1500);
        } else {
          const gone = m.sweep(now);
          const want: string[] = [];
          for (const [nid, n] of model) {
            const missed = (now - n.heardAt) / INTERVAL;
            if (missed >= 5) want.push(nid);
            else if (missed >= 3) n.suspect = true;
          }
          expect([...gone].sort()).to.deep.equal(want.sort());
          for (const g of gone) { model.delete(g); unhealthy.delete(g); }
        }
        for (const pool of ['p', 'q']) {
          const exp = expected(pool);
          expect(m.tiers(pool), `step ${step}, pool ${pool}`).to.deep.equal(exp);
          // A sample comes from the best tier holding an alive node, and is bounded.
          const sample = m.sample(pool, now, {}, 4);
          const alive = [...exp].filter(([nid]) => m.state(nid, now) === 'alive');
          const best = Math.min(...alive.map(([, t]) => t));
          expect(sample.length).to.be.at.most(4);
          expect(sample.length > 0).to.equal(alive.length > 0);
          for (const c of sample) {
            expect(exp.get(c.nodeId)).to.equal(best);
            // Strategies see grants not yet in a heartbeat as load.
            expect(c.inFlight).to.equal(model.get(c.nodeId)!.inFlight + model.get(c.nodeId)!.unseen);
          }
        }
      }
    });
  }

  it('never places on a full node while another has room, with every strategy, and looks at a bounded number of candidates', () => {
    const m = new Membership();
    const n = 2000;
    for (let i = 0; i < n; i++) {
      // Full: nothing idle, at max.
      m.observe({
        v: 1, nodeId: `full${i}`, host: 'h', pid: i + 1, intervalMs: INTERVAL, draining: false, startedAt: 1, seq: 1,
        inFlight: 0, maxConcurrent: 0, cpu: 0, memory: { rss: 0, heapUsed: 0 }, pools: { p: stats({ total: 4, active: 4, max: 4 }) },
      } as Heartbeat, 0);
    }
    for (const id of ['ok1', 'ok2', 'ok3']) {
      m.observe({
        v: 1, nodeId: id, host: 'h2', pid: 1, intervalMs: INTERVAL, draining: false, startedAt: 1, seq: 1,
        inFlight: 0, maxConcurrent: 0, cpu: 0, memory: { rss: 0, heapUsed: 0 }, pools: { p: stats({ total: 4, idle: 1, active: 3, max: 4 }) },
      } as Heartbeat, 0);
    }
    for (const name of STRATEGY_NAMES) {
      const s = createStrategy(name);
      for (let k = 0; k < 200; k++) {
        let looked = 0;
        const sample = m.sample('p', 10, { allow: () => { looked++; return true; } });
        expect(sample.length).to.be.at.most(SAMPLE_SIZE);
        expect(looked).to.be.at.most(SAMPLE_SIZE);
        const c = s.select(sample)!;
        expect(c.nodeId, name).to.match(/^ok/);
      }
    }
    // Our own placements use up the idle ones; with every node full, the request may still queue on one.
    for (const id of ['ok1', 'ok2', 'ok3']) m.placed(id);
    expect(new Set(m.tiers('p').values())).to.deep.equal(new Set([2]));
    expect(m.sample('p', 10).length).to.equal(SAMPLE_SIZE);
  });

  it('a pool whose backend a health verdict says is down drops to the last tier on that node (not placed while another has room), and comes back', () => {
    const m = new Membership();
    const beat = (nodeId: string, pid: number, p: Partial<PoolStats>) => m.observe({
      v: 1, nodeId, host: 'h', pid, intervalMs: INTERVAL, draining: false, startedAt: 1, seq: 1,
      inFlight: 0, maxConcurrent: 0, cpu: 0, memory: { rss: 0, heapUsed: 0 }, pools: { p: stats(p) },
    } as Heartbeat, 0);
    beat('idle', 1, { total: 2, idle: 2, max: 4 });   // tier 0: an idle resource
    beat('room', 2, { total: 1, idle: 0, active: 1, max: 4 });   // tier 1: room to create
    expect(m.sample('p', 10).map((c) => c.nodeId)).to.deep.equal(['idle']);
    m.markPoolsUnhealthy('idle', ['p']);
    expect(m.tiers('p').get('idle')).to.equal(2);
    expect(m.sample('p', 10).map((c) => c.nodeId)).to.deep.equal(['room']);
    m.markPoolsUnhealthy('idle', []);
    expect(m.sample('p', 10).map((c) => c.nodeId)).to.deep.equal(['idle']);
  });
});
