import { expect } from 'chai';
import type { Heartbeat, PoolStats } from '@shoal/protocol';
import { DEFAULT_HEARTBEAT_LIMITS, refuseHeartbeat } from '../../services/balancer/src/heartbeat-guard.js';
import { Membership } from '../../services/balancer/src/membership.js';
import { FakeClock } from '../helpers/fake-clock.js';

function stats(): PoolStats {
  return { kind: 'synthetic', total: 4, idle: 2, active: 2, creating: 0, waiting: 0, min: 0, max: 8, target: 4, maxWaiting: 10, weight: 1, latencyMs: 1, execLatencyMs: 1, errorRate: 0, requestRate: 1, reuseRate: 0, memoryBytes: 0, available: true };
}

function hb(nodeId: string, o: Partial<Heartbeat> = {}): Heartbeat {
  return { v: 1, nodeId, seq: 1, startedAt: 1000, instanceId: 'real', intervalMs: 1000, draining: false, host: 'h', pid: 1, inFlight: 0, maxConcurrent: 0, cpu: 0, memory: { rss: 0, heapUsed: 0 }, pools: { p: stats() }, ...o } as Heartbeat;
}

const fresh = { has: false, count: 0 };

describe('heartbeat guard (bounds on every field)', () => {
  const now = 1_000_000;
  it('accepts a normal heartbeat', () => {
    expect(refuseHeartbeat(hb('a', { startedAt: now - 5000 }), 'a', now, fresh)).to.equal(undefined);
  });

  it('refuses what would bend membership', () => {
    const cases: [Partial<Heartbeat>, string, string][] = [
      [{}, 'b', 'node_id_mismatch'],
      [{ intervalMs: 1e9 }, 'a', 'interval_out_of_bounds'],
      [{ intervalMs: 1 }, 'a', 'interval_out_of_bounds'],
      [{ startedAt: now + 3_600_000 }, 'a', 'started_in_future'],
      [{ startedAt: -1 }, 'a', 'started_in_future'],
      [{ seq: 2 ** 60 }, 'a', 'seq_out_of_bounds'],
      [{ pools: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`p${i}`, stats()])) }, 'a', 'too_many_pools'],
      [{ pools: { 'a.b': stats() } }, 'a', 'bad_pool_stats'],
      [{ pools: { p: 7 as unknown as PoolStats } }, 'a', 'bad_pool_stats'],
    ];
    for (const [o, subj, want] of cases) expect(refuseHeartbeat(hb('a', { startedAt: now - 1, ...o }), subj, now, fresh), want).to.equal(want);
    expect(refuseHeartbeat(hb('a', { startedAt: now }), 'a', now, { has: false, count: DEFAULT_HEARTBEAT_LIMITS.maxNodes })).to.equal('too_many_nodes');
    expect(refuseHeartbeat(hb('a', { startedAt: now }), 'a', now, { has: true, count: DEFAULT_HEARTBEAT_LIMITS.maxNodes })).to.equal(undefined);
  });
});

describe('membership under forged heartbeats (fake clock)', () => {
  it('a forged heartbeat from another instance is undone by the real node\'s next one', async () => {
    const clock = new FakeClock();
    const m = new Membership();
    let seq = 0;
    const real = () => m.observe(hb('a', { seq: seq++, startedAt: 5000 }), clock.now());
    real();
    // A forger: newer start, draining, another instance.
    expect(m.observe(hb('a', { instanceId: 'forged', startedAt: 9000, seq: 0, draining: true }), clock.now()).kind).to.equal('restarted');
    expect(m.candidates('p', clock.now())).to.have.length(0);
    await clock.advance(1000);
    expect(real().kind).to.equal('updated');
    expect(m.candidates('p', clock.now()).map((c) => c.nodeId)).to.deep.equal(['a']);
  });

  it('a forged huge seq with the real instance id does not make the real heartbeats stale for ever', () => {
    const m = new Membership();
    m.observe(hb('a', { seq: 10 }), 0);
    m.observe(hb('a', { seq: 2 ** 50, draining: true }), 10);
    expect(m.observe(hb('a', { seq: 11 }), 1000).kind).to.equal('updated');
    expect(m.nodes(1000)[0]!.draining).to.equal(false);
    // A real reordering (a step back of a few) is still stale.
    expect(m.observe(hb('a', { seq: 9 }), 1001).kind).to.equal('stale');
  });

  it('a restart is told by the instance id, not by timestamps', () => {
    const m = new Membership();
    m.observe(hb('a', { seq: 100, startedAt: 1000 }), 0);
    // Same start time (a coarse or reset clock), new process: a restart.
    expect(m.observe(hb('a', { seq: 0, startedAt: 1000, instanceId: 'next' }), 100).kind).to.equal('restarted');
  });

  it('a phantom that stops beating is swept within goneAfter intervals (intervals are bounded by the guard)', () => {
    const m = new Membership();
    m.observe(hb('ghost', { intervalMs: DEFAULT_HEARTBEAT_LIMITS.maxIntervalMs }), 0);
    expect(m.sweep(5 * DEFAULT_HEARTBEAT_LIMITS.maxIntervalMs - 1)).to.deep.equal([]);
    expect(m.sweep(5 * DEFAULT_HEARTBEAT_LIMITS.maxIntervalMs)).to.deep.equal(['ghost']);
  });
});

describe('outage (pure)', () => {
  it('membership does not age silence while frozen, and the outage does not count after thaw', () => {
    const m = new Membership();
    m.observe(hb('a'), 0);
    m.freeze(500);
    expect(m.sweep(60_000)).to.deep.equal([]);
    expect(m.state('a', 60_000)).to.equal('alive');
    m.thaw(60_000);
    expect(m.state('a', 60_400)).to.equal('alive');
    expect(m.state('a', 60_000 + 5000)).to.equal('gone');
  });

  it('after a reconnect only nodes heard since are placeable, for a bounded time', async () => {
    const { Rewarm } = await import('../../services/balancer/src/outage.js');
    const r = new Rewarm(() => 1000);
    expect(r.allows('a', 0)).to.equal(true);
    r.reconnected(100);
    expect(r.active(100)).to.equal(true);
    expect(r.allows('a', 200)).to.equal(false);
    r.heardFrom('a');
    expect(r.allows('a', 300)).to.equal(true);
    expect(r.allows('b', 300)).to.equal(false);
    expect(r.active(1100)).to.equal(false);
    expect(r.allows('b', 1100)).to.equal(true);
  });
});
