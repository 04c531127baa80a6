import { expect } from 'chai';
import type { Heartbeat, PoolStats } from '@shoal/protocol';
import { Membership } from '../../services/balancer/src/membership.js';

function stats(o: Partial<PoolStats> = {}): PoolStats {
  return {
    kind: 'synthetic', total: 4, idle: 2, active: 2, creating: 0, waiting: 1, min: 0, max: 8, target: 4,
    maxWaiting: 10, weight: 3, latencyMs: 12, execLatencyMs: 30, errorRate: 0.05, requestRate: 7, reuseRate: 0.5, memoryBytes: 0, available: true, ...o,
  };
}

function hb(nodeId: string, o: Partial<Heartbeat> = {}): Heartbeat {
  return {
    v: 1, nodeId, seq: 1, startedAt: 1000, intervalMs: 1000, draining: false, host: 'h1', pid: 10,
    inFlight: 0, maxConcurrent: 0, cpu: 0.25, memory: { rss: 100, heapUsed: 50 }, pools: { p: stats() }, ...o,
  } as Heartbeat;
}

const ids = (m: Membership, now: number, pool = 'p') => m.candidates(pool, now).map((c) => c.nodeId);

describe('membership', () => {
  it('turns a heartbeat into a candidate for each pool it serves', () => {
    const m = new Membership();
    expect(m.observe(hb('a'), 0)).to.deep.equal({ kind: 'joined', replaced: [] });
    expect(m.candidates('p', 0)).to.deep.equal([{
      nodeId: 'a', weight: 3, idle: 2, total: 4, max: 8, active: 2, waiting: 1, creating: 0, inFlight: 0,
      latencyMs: 12, requestRate: 7, errorRate: 0.05, resourceUsage: 0.25,
    }]);
    expect(ids(m, 0, 'other')).to.deep.equal([]);
  });

  it('uses the busiest of cpu, memory budget and request slots as resource usage', () => {
    const m = new Membership();
    m.observe(hb('a', { cpu: 0.1, memory: { rss: 600, heapUsed: 1 }, inFlight: 3, maxConcurrent: 10 }), 0);
    expect(m.candidates('p', 0)[0]!.resourceUsage).to.equal(0.3);
    expect(m.candidates('p', 0, { memoryLimitBytes: 1000 })[0]!.resourceUsage).to.equal(0.6);
  });

  it('does not let missing pool numbers become NaN', () => {
    const m = new Membership();
    m.observe(hb('a', { pools: { p: { kind: 'x', idle: 1 } as PoolStats } }), 0);
    const c = m.candidates('p', 0)[0]!;
    expect(c.weight).to.equal(1);
    for (const v of Object.values(c)) if (typeof v === 'number') expect(Number.isNaN(v)).to.equal(false);
  });

  it('is suspect after 3 silent intervals and gone after 5, using the node\'s own interval', () => {
    const m = new Membership();
    m.observe(hb('a', { intervalMs: 1000 }), 0);
    m.observe(hb('slow', { intervalMs: 4000, host: 'h2' }), 0);
    expect(m.state('a', 2999)).to.equal('alive');
    expect(ids(m, 2999)).to.deep.equal(['a', 'slow']);
    expect(m.state('a', 3000)).to.equal('suspect');
    expect(ids(m, 3000)).to.deep.equal(['slow']);
    expect(m.state('a', 4999)).to.equal('suspect');
    expect(m.sweep(4999)).to.deep.equal([]);
    expect(m.state('a', 5000)).to.equal('gone');
    expect(m.nodes(5000).map((n) => [n.nodeId, n.state])).to.deep.equal([['a', 'gone'], ['slow', 'alive']]);
    expect(m.sweep(5000)).to.deep.equal(['a']);
    expect(m.state('a', 5000)).to.equal(undefined);
    expect(m.nodes(5000).map((n) => n.nodeId)).to.deep.equal(['slow']);
    expect(m.state('slow', 12_000)).to.equal('suspect');
  });

  it('a suspect node that speaks again is alive again', () => {
    const m = new Membership();
    m.observe(hb('a'), 0);
    expect(m.state('a', 3500)).to.equal('suspect');
    m.observe(hb('a', { seq: 2 }), 3500);
    expect(m.state('a', 3500)).to.equal('alive');
    expect(ids(m, 3500)).to.deep.equal(['a']);
  });

  it('excludes draining and unhealthy nodes until they recover', () => {
    const m = new Membership();
    m.observe(hb('a', { host: 'ha' }), 0);
    m.observe(hb('b', { host: 'hb', draining: true }), 0);
    m.observe(hb('c', { host: 'hc' }), 0);
    m.markUnhealthy('c', true);
    expect(ids(m, 0)).to.deep.equal(['a']);
    expect(m.nodes(0).map((n) => n.eligible)).to.deep.equal([true, false, false]);
    m.markUnhealthy('c', false);
    m.observe(hb('b', { host: 'hb', seq: 2 }), 0);
    expect(ids(m, 0)).to.deep.equal(['a', 'b', 'c']);
    expect(m.candidates('p', 0, { allow: (id) => id !== 'b' }).map((c) => c.nodeId)).to.deep.equal(['a', 'c']);
  });

  it('replaces a silent node when a new id arrives from the same host and pid', () => {
    const m = new Membership();
    m.observe(hb('old', { startedAt: 1000 }), 0);
    m.observe(hb('other', { host: 'h2' }), 0);
    m.placed('old');
    // The old process missed a heartbeat (one interval) and the new one started later: a restart.
    expect(m.observe(hb('new', { startedAt: 5000 }), 1000)).to.deep.equal({ kind: 'joined', replaced: ['old'] });
    m.observe(hb('other', { host: 'h2', seq: 2 }), 1000);
    expect(ids(m, 1000)).to.deep.equal(['other', 'new']);
    expect(m.candidates('p', 1000).find((c) => c.nodeId === 'new')!.inFlight).to.equal(0);
    // Should the old id speak again after all, it is alive: it joins again, and the new one stays.
    expect(m.observe(hb('old', { startedAt: 1000, seq: 9 }), 1100)).to.deep.equal({ kind: 'joined', replaced: [] });
    expect(ids(m, 1100)).to.deep.equal(['other', 'new', 'old']);
    // Same pid on another host is a different process.
    expect(m.observe(hb('third', { host: 'h3' }), 1100).replaced).to.deep.equal([]);
  });

  it('keeps two live nodes with the same host and pid (containers as PID 1 on host networking)', () => {
    const m = new Membership();
    const a = (seq: number) => hb('a', { host: 'box', pid: 1, startedAt: 1000, seq });
    const b = (seq: number) => hb('b', { host: 'box', pid: 1, startedAt: 2000, seq });
    expect(m.observe(a(1), 0)).to.deep.equal({ kind: 'joined', replaced: [] });
    // b started later, while a is beating: a newcomer, not a restart of a.
    expect(m.observe(b(1), 300)).to.deep.equal({ kind: 'joined', replaced: [] });
    for (let i = 2; i <= 10; i++) {
      const t = i * 1000;
      // Jitter: each is heard well within its interval, in either order.
      if (i % 2 === 0) {
        expect(m.observe(a(i), t).kind).to.equal('updated');
        expect(m.observe(b(i), t + 300).kind).to.equal('updated');
      } else {
        expect(m.observe(b(i), t - 200).kind).to.equal('updated');
        expect(m.observe(a(i), t).kind).to.equal('updated');
      }
      expect(ids(m, t + 300)).to.deep.equal(['a', 'b']);
    }
    expect(m.sweep(10_300)).to.deep.equal([]);
    expect(m.nodes(10_300).map((n) => [n.nodeId, n.state, n.eligible])).to.deep.equal([['a', 'alive', true], ['b', 'alive', true]]);
  });

  it('does not let a node that started earlier replace a silent one with the same host and pid', () => {
    const m = new Membership();
    m.observe(hb('late', { host: 'box', pid: 1, startedAt: 5000 }), 0);
    // 'late' is silent for an interval; 'early' (started before it) cannot be its restart.
    expect(m.observe(hb('early', { host: 'box', pid: 1, startedAt: 1000 }), 1500)).to.deep.equal({ kind: 'joined', replaced: [] });
    expect(m.state('late', 1500)).to.equal('alive');
    // 'late' speaks again: both are placeable.
    expect(m.observe(hb('late', { host: 'box', pid: 1, startedAt: 5000, seq: 2 }), 1600).kind).to.equal('updated');
    expect(ids(m, 1600)).to.deep.equal(['late', 'early']);
  });

  it('resets counters when a node restarts under the same id, and ignores reordered heartbeats', () => {
    const m = new Membership();
    m.observe(hb('a', { seq: 10 }), 0);
    m.placed('a');
    m.placed('a');
    expect(m.observe(hb('a', { seq: 9 }), 10).kind).to.equal('stale');
    expect(m.observe(hb('a', { seq: 10 }), 10).kind).to.equal('stale');
    expect(m.nodes(10)[0]!.lastSeenAt).to.equal(0);
    expect(m.observe(hb('a', { seq: 1, startedAt: 9000 }), 20).kind).to.equal('restarted');
    expect(m.nodes(20)[0]).to.include({ inFlight: 0, seq: 1, startedAt: 9000, lastSeenAt: 20 });
  });

  it('counts in-flight placements until they settle; heartbeats do not reset them', () => {
    const m = new Membership();
    m.observe(hb('a'), 0);
    m.placed('a');
    m.placed('a');
    m.placed('nobody');
    expect(m.candidates('p', 0)[0]!.inFlight).to.equal(2);
    expect(m.observe(hb('a', { seq: 2 }), 500).kind).to.equal('updated');
    expect(m.candidates('p', 500)[0]!.inFlight).to.equal(2);
    m.settled('a');
    m.settled('a');
    m.settled('a');
    expect(m.candidates('p', 500)[0]!.inFlight).to.equal(0);
    m.placed('a');
    expect(m.candidates('p', 500)[0]!.inFlight).to.equal(1);
  });

  it('lets an operator weight override the pool weight, even before the node is seen', () => {
    const m = new Membership();
    m.setWeight('a', 0);
    m.observe(hb('a'), 0);
    expect(m.candidates('p', 0)[0]!.weight).to.equal(0);
    expect(m.nodes(0)[0]!.weight).to.equal(0);
    m.setWeight('a', undefined);
    expect(m.candidates('p', 0)[0]!.weight).to.equal(3);
    expect(() => m.setWeight('a', -1)).to.throw(RangeError);
  });

  it('forgets an unhealthy mark when the node is swept', () => {
    const m = new Membership();
    m.observe(hb('a'), 0);
    m.markUnhealthy('a', true);
    expect(m.sweep(5000)).to.deep.equal(['a']);
    m.observe(hb('a', { startedAt: 9000 }), 6000);
    expect(ids(m, 6000)).to.deep.equal(['a']);
  });

  it('rejects thresholds that make no sense', () => {
    expect(() => new Membership({ suspectAfterIntervals: 5, goneAfterIntervals: 3 })).to.throw(RangeError);
    expect(() => new Membership({ suspectAfterIntervals: 0 })).to.throw(RangeError);
  });
});
