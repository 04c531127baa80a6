import { expect } from 'chai';
import type { Heartbeat, PoolStats } from '@shoal/protocol';
import {
  createStrategy, preferIdle, STRATEGY_NAMES, isStrategyName, PerformanceBased, PowerOfTwo,
  type Candidate, type Strategy,
} from '../../services/balancer/src/strategies/index.js';
import { Membership } from '../../services/balancer/src/membership.js';

function cand(nodeId: string, o: Partial<Candidate> = {}): Candidate {
  return {
    nodeId, weight: 1, idle: 5, total: 10, max: 10, active: 5, waiting: 0, creating: 0, inFlight: 0,
    latencyMs: 10, requestRate: 10, errorRate: 0, resourceUsage: 0.2, ...o,
  };
}

function stats(o: Partial<PoolStats> = {}): PoolStats {
  return {
    kind: 'synthetic', total: 10, idle: 0, active: 10, creating: 0, waiting: 0, min: 0, max: 20, target: 10,
    maxWaiting: 100, weight: 1, latencyMs: 10, execLatencyMs: 10, errorRate: 0, requestRate: 5, reuseRate: 0, memoryBytes: 0, available: true, ...o,
  };
}

function hb(nodeId: string, pool: Partial<PoolStats> = {}, o: Partial<Heartbeat> = {}): Heartbeat {
  return {
    v: 1, nodeId, seq: 1, startedAt: 1000, intervalMs: 1000, draining: false, host: `host-${nodeId}`, pid: 100,
    inFlight: 0, maxConcurrent: 0, cpu: 0.1, memory: { rss: 1, heapUsed: 1 }, pools: { p: stats(pool) }, ...o,
  } as Heartbeat;
}

/** Places `n` requests one after another, counting each as in flight, as the balancer does. */
function burst(m: Membership, s: Strategy, n: number, now = 0): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const c = s.select(m.candidates('p', now));
    expect(c, `pick ${i}`).to.not.equal(undefined);
    m.placed(c!.nodeId);
    counts.set(c!.nodeId, (counts.get(c!.nodeId) ?? 0) + 1);
  }
  return counts;
}

/** Deterministic [0, 1) source so p2c tests do not flake. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

describe('strategies', () => {
  it('lists every strategy name and builds each', () => {
    expect([...STRATEGY_NAMES].sort()).to.deep.equal(['least_connections', 'p2c', 'performance_based', 'round_robin', 'weighted_round_robin']);
    for (const name of STRATEGY_NAMES) expect(createStrategy(name).name).to.equal(name);
    expect(isStrategyName('random')).to.equal(false);
    expect(() => createStrategy('random' as never)).to.throw(RangeError, /unknown strategy/);
  });

  it('every strategy returns undefined for an empty list and never picks weight 0', () => {
    for (const name of STRATEGY_NAMES) {
      const s = createStrategy(name);
      expect(s.select([])).to.equal(undefined);
      expect(s.select([cand('a', { weight: 0 })])).to.equal(undefined);
      for (let i = 0; i < 50; i++) expect(s.select([cand('a', { weight: 0 }), cand('b')])!.nodeId).to.equal('b');
    }
  });

  describe('preferIdle', () => {
    it('keeps only nodes with idle capacity left after our in-flight placements, when any has some', () => {
      const list = [cand('a', { idle: 2, inFlight: 2 }), cand('b', { idle: 1 }), cand('c', { idle: 0 })];
      expect(preferIdle(list).map((c) => c.nodeId)).to.deep.equal(['b']);
    });
    it('keeps everything when no node has idle capacity', () => {
      const list = [cand('a', { idle: 0 }), cand('b', { idle: 1, inFlight: 3 })];
      expect(preferIdle(list)).to.have.length(2);
    });
    it('applies to every strategy', () => {
      const list = [cand('a', { idle: 0, latencyMs: 1, active: 0 }), cand('b', { idle: 1, latencyMs: 500, active: 9, weight: 1 }), cand('c', { idle: 0, weight: 100 })];
      for (const name of STRATEGY_NAMES) {
        const s = createStrategy(name);
        for (let i = 0; i < 20; i++) expect(s.select(list)!.nodeId, name).to.equal('b');
      }
    });
  });

  describe('round_robin', () => {
    it('cycles through the nodes in order', () => {
      const s = createStrategy('round_robin');
      const list = [cand('b'), cand('a'), cand('c')];
      const picks = Array.from({ length: 7 }, () => s.select(list)!.nodeId);
      expect(picks).to.deep.equal(['a', 'b', 'c', 'a', 'b', 'c', 'a']);
    });
    it('keeps its place when a node joins or leaves', () => {
      const s = createStrategy('round_robin');
      expect(s.select([cand('a'), cand('b'), cand('c')])!.nodeId).to.equal('a');
      expect(s.select([cand('a'), cand('b'), cand('c')])!.nodeId).to.equal('b');
      expect(s.select([cand('a'), cand('c')])!.nodeId).to.equal('c');
      expect(s.select([cand('a'), cand('bb'), cand('c')])!.nodeId).to.equal('a');
      expect(s.select([cand('a'), cand('bb'), cand('c')])!.nodeId).to.equal('bb');
    });
  });

  describe('least_connections', () => {
    it('picks the node with the least outstanding work per slot, counting in-flight placements', () => {
      const s = createStrategy('least_connections');
      const list = [
        cand('a', { idle: 0, active: 4, max: 10 }),
        cand('b', { idle: 0, active: 6, max: 20 }), // 0.3 per slot: emptiest
        cand('c', { idle: 0, active: 1, waiting: 1, inFlight: 2, max: 10 }),
      ];
      for (let i = 0; i < 10; i++) expect(s.select(list)!.nodeId).to.equal('b');
    });
    it('shares ties instead of always taking the first', () => {
      const s = createStrategy('least_connections');
      const list = [cand('a'), cand('b'), cand('c')];
      const seen = new Set(Array.from({ length: 6 }, () => s.select(list)!.nodeId));
      expect(seen.size).to.equal(3);
    });
  });

  describe('weighted_round_robin', () => {
    const list = [cand('a', { weight: 5 }), cand('b', { weight: 1 }), cand('c', { weight: 1 })];

    it('is smooth: weights 5,1,1 give a,a,b,a,c,a,a', () => {
      const s = createStrategy('weighted_round_robin');
      expect(Array.from({ length: 7 }, () => s.select(list)!.nodeId)).to.deep.equal(['a', 'a', 'b', 'a', 'c', 'a', 'a']);
    });
    it('gives exact proportions over every full cycle', () => {
      const s = createStrategy('weighted_round_robin');
      for (const k of [1, 3, 50]) {
        const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
        for (let i = 0; i < 7 * k; i++) counts[s.select(list)!.nodeId]!++;
        expect(counts).to.deep.equal({ a: 5 * k, b: k, c: k });
      }
    });
    it('copes with a node joining and another leaving, and with fractional weights', () => {
      const s = createStrategy('weighted_round_robin');
      for (let i = 0; i < 3; i++) s.select(list);
      const next = [cand('a', { weight: 2 }), cand('d', { weight: 1 })];
      const counts: Record<string, number> = { a: 0, d: 0 };
      for (let i = 0; i < 300; i++) counts[s.select(next)!.nodeId]!++;
      expect(counts.a).to.be.within(199, 201);
      const frac = createStrategy('weighted_round_robin');
      const fl = [cand('x', { weight: 0.5 }), cand('y', { weight: 1.5 })];
      const fc: Record<string, number> = { x: 0, y: 0 };
      for (let i = 0; i < 400; i++) fc[frac.select(fl)!.nodeId]!++;
      expect(fc).to.deep.equal({ x: 100, y: 300 });
    });
  });

  describe('p2c', () => {
    it('takes the less loaded of the two it draws', () => {
      // rand 0 draws index 0 and then index 1 (the second draw skips the first).
      const s = new PowerOfTwo(() => 0);
      const list = [cand('a', { idle: 0, active: 9 }), cand('b', { idle: 0, active: 2 }), cand('c', { idle: 0, active: 0 })];
      expect(s.select(list)!.nodeId).to.equal('b');
      expect(new PowerOfTwo(() => 0.999).select(list)!.nodeId).to.equal('c');
      expect(new PowerOfTwo(() => 1).select([cand('a')])!.nodeId).to.equal('a');
    });
    it('spreads a burst of 100 over 4 equal busy nodes using in-flight accounting', () => {
      // Chance alone would stay under 40% too; the tight spread is what in-flight accounting buys.
      for (const seed of [1, 2, 3, 7, 42, 99, 1234, 5555]) {
        const m = new Membership();
        for (const id of ['n1', 'n2', 'n3', 'n4']) m.observe(hb(id, { idle: 0, active: 10, max: 20 }), 0);
        const counts = burst(m, createStrategy('p2c', { rand: lcg(seed) }), 100);
        const n = [...counts.values()];
        expect(n, `seed ${seed}`).to.have.length(4);
        expect(Math.max(...n), `seed ${seed}`).to.be.at.most(40);
        expect(Math.max(...n) - Math.min(...n), `seed ${seed}: ${n.join(',')}`).to.be.at.most(4);
      }
    });
    it('without placed() a burst piles onto the node that looked emptiest', () => {
      const s = createStrategy('p2c', { rand: lcg(42) });
      const list = [cand('a', { idle: 0, active: 1 }), cand('b', { idle: 0, active: 5 }), cand('c', { idle: 0, active: 5 }), cand('d', { idle: 0, active: 5 })];
      const counts: Record<string, number> = {};
      for (let i = 0; i < 100; i++) { const id = s.select(list)!.nodeId; counts[id] = (counts[id] ?? 0) + 1; }
      expect(counts.a).to.be.above(40);
    });
  });

  describe('performance_based', () => {
    it('uses the design weights by default and accepts overrides', () => {
      expect(new PerformanceBased().weights).to.deep.equal({ latency: 0.4, throughput: 0.3, errorRate: 0.2, resource: 0.1 });
      expect(new PerformanceBased({ latency: 1 }).weights.latency).to.equal(1);
      expect(() => new PerformanceBased({ errorRate: -1 })).to.throw(RangeError);
    });
    it('prefers low latency and low error rate', () => {
      const s = createStrategy('performance_based');
      const list = [
        cand('slow', { idle: 0, latencyMs: 200 }),
        cand('fast', { idle: 0, latencyMs: 20 }),
        cand('flaky', { idle: 0, latencyMs: 20, errorRate: 0.3 }),
      ];
      expect(s.select(list)!.nodeId).to.equal('fast');
      const busy = createStrategy('performance_based');
      expect(busy.select([cand('x', { idle: 0, requestRate: 1 }), cand('y', { idle: 0, requestRate: 50 })])!.nodeId).to.equal('y');
      const hot = createStrategy('performance_based');
      expect(hot.select([cand('x', { idle: 0, resourceUsage: 0.9 }), cand('y', { idle: 0, resourceUsage: 0.1 })])!.nodeId).to.equal('y');
    });
    it('honours its weights: with only resource weighted, latency does not matter', () => {
      const s = createStrategy('performance_based', { performanceWeights: { latency: 0, throughput: 0, errorRate: 0, resource: 1 } });
      expect(s.select([cand('x', { idle: 0, latencyMs: 1, resourceUsage: 0.9 }), cand('y', { idle: 0, latencyMs: 900, resourceUsage: 0.1 })])!.nodeId).to.equal('y');
    });
    it('sends most of a burst to the best node but not all of it', () => {
      const m = new Membership();
      m.observe(hb('best', { latencyMs: 10, errorRate: 0 }), 0);
      for (const id of ['w1', 'w2', 'w3']) m.observe(hb(id, { latencyMs: 100, errorRate: 0.1 }), 0);
      const counts = burst(m, createStrategy('performance_based'), 100);
      const best = counts.get('best') ?? 0;
      for (const id of ['w1', 'w2', 'w3']) {
        expect(counts.get(id) ?? 0, id).to.be.above(5);
        expect(best).to.be.above(counts.get(id) ?? 0);
      }
      expect(best).to.be.below(70);
    });
  });

  it('never chooses draining, unhealthy, suspect or gone nodes, whatever the strategy', () => {
    const m = new Membership();
    // The excluded nodes look the most attractive on every metric and weight.
    const bait: Partial<PoolStats> = { idle: 10, active: 0, latencyMs: 1, requestRate: 1000, weight: 100 };
    m.observe(hb('ok1', { idle: 0, latencyMs: 300 }), 10_000);
    m.observe(hb('ok2', { idle: 0, latencyMs: 300 }), 10_000);
    m.observe(hb('draining', bait, { draining: true }), 10_000);
    m.observe(hb('sick', bait), 10_000);
    m.markUnhealthy('sick', true);
    m.observe(hb('quiet', bait), 6_500); // 3.5 intervals silent at 10_000: suspect
    m.observe(hb('dead', bait), 4_000); // 6 intervals: gone, not yet swept
    expect(m.state('quiet', 10_000)).to.equal('suspect');
    expect(m.state('dead', 10_000)).to.equal('gone');
    for (const name of STRATEGY_NAMES) {
      const s = createStrategy(name);
      for (let i = 0; i < 1000; i++) {
        const c = s.select(m.candidates('p', 10_000));
        expect(['ok1', 'ok2'], name).to.include(c!.nodeId);
      }
    }
  });
});
