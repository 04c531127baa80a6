import { expect } from 'chai';
import { encode, type Heartbeat, type HealthVerdict } from '@shoal/protocol';
import { silentLogger } from '@shoal/runtime';
import { HealthView } from '../../services/balancer/src/health.js';
import { Membership } from '../../services/balancer/src/membership.js';

const hb = (nodeId: string, pid: number): Heartbeat => ({
  v: 1, nodeId, seq: 1, startedAt: 1000, intervalMs: 1000, draining: false, host: 'h', pid, inFlight: 0, maxConcurrent: 0, cpu: 0,
  memory: { rss: 1, heapUsed: 1 },
  pools: { p: { kind: 'synthetic', total: 1, idle: 1, active: 0, creating: 0, waiting: 0, min: 0, max: 2, target: 1, maxWaiting: 1, weight: 1, latencyMs: 0, execLatencyMs: 0, errorRate: 0, requestRate: 0, reuseRate: 0, memoryBytes: 0, available: true } },
});
const verdict = (o: Partial<HealthVerdict>): HealthVerdict => ({ v: 1, nodeId: 'n1', healthy: true, at: 100, since: 50, checkerId: 'c', checks: [], pools: {}, ...o });

describe('balancer HealthView (verdicts into membership)', () => {
  it('an unhealthy node is no candidate; a healthy verdict brings it back; the newest verdict (by at) wins', () => {
    const m = new Membership();
    const h = new HealthView(m, silentLogger);
    m.observe(hb('n1', 1), 0);
    m.observe(hb('n2', 2), 0);
    h.onMessage(encode(verdict({ healthy: false, at: 200, reason: 'ping: no answer' })));
    expect(m.candidates('p', 10).map((c) => c.nodeId)).to.deep.equal(['n2']);
    // An older healthy verdict (another checker's, delivered late) does not undo it.
    h.apply('n1', verdict({ healthy: true, at: 150 }));
    expect(m.candidates('p', 10).map((c) => c.nodeId)).to.deep.equal(['n2']);
    h.apply('n1', verdict({ healthy: true, at: 300 }));
    expect(m.candidates('p', 10).map((c) => c.nodeId)).to.deep.equal(['n1', 'n2']);
  });

  it("pools whose backend is down are marked per node; a deleted verdict clears everything; a bad message changes nothing", () => {
    const m = new Membership();
    const h = new HealthView(m, silentLogger);
    h.apply('n1', verdict({ pools: { p: { healthy: false, reason: 'down' }, q: { healthy: true } } }));
    expect(m.poolUnhealthy('n1', 'p')).to.equal(true);
    expect(m.poolUnhealthy('n1', 'q')).to.equal(false);
    h.onMessage(new Uint8Array([1, 2, 3]));
    h.onMessage(encode({ v: 1, nodeId: 'n1', healthy: 'no' }));
    expect(m.poolUnhealthy('n1', 'p')).to.equal(true);
    h.apply('n1', undefined);
    expect(m.poolUnhealthy('n1', 'p')).to.equal(false);
    expect(h.of('n1')).to.equal(undefined);
  });

  it('a verdict heard before the node, or kept while membership dropped it, applies when it (re)joins', () => {
    const m = new Membership();
    const h = new HealthView(m, silentLogger);
    h.apply('n1', verdict({ healthy: false, at: 100 }));
    m.observe(hb('n1', 1), 0);
    expect(m.candidates('p', 10)).to.have.length(0);
    // Silent long enough to be swept: membership forgets its health too.
    expect(m.sweep(10_000)).to.deep.equal(['n1']);
    m.observe({ ...hb('n1', 1), seq: 2 }, 10_001);
    h.reapply('n1');
    expect(m.candidates('p', 10_002)).to.have.length(0);
  });
});
