import { expect } from 'chai';
import { connect, type NatsConnection } from 'nats';
import { decode, encode, ok, PROTOCOL_VERSION, subjects, type Heartbeat, type HealthVerdict, type PoolStats } from '@shoal/protocol';
import { silentLogger } from '@shoal/runtime';
import { Balancer } from '../../services/balancer/src/balancer.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

/**
 * What a balancer does with health verdicts, in-process on a real
 * nats-server with pretend nodes (test subscribers) so that each node's
 * verdict can be set at will: an unhealthy node gets nothing; a node whose
 * pool's backend is down gets that pool's requests only when no other node can
 * take them.
 */
const s = subjects('shoal');

describe('balancer and health verdicts (in-process balancer, real nats-server, pretend nodes)', function () {
  this.timeout(20_000);
  let server: NatsServer;
  let nc: NatsConnection;
  let bnc: NatsConnection;
  let b: Balancer;
  const hits = new Map<string, number>();
  let seq = 0;
  let beat: NodeJS.Timeout | undefined;

  const stats: PoolStats = {
    kind: 'synthetic', total: 2, idle: 2, active: 0, creating: 0, waiting: 0, min: 0, max: 4, target: 2, maxWaiting: 10,
    weight: 1, latencyMs: 1, execLatencyMs: 1, errorRate: 0, requestRate: 0, reuseRate: 0, memoryBytes: 0, available: true,
  };
  const heartbeat = (nodeId: string) => {
    const hb: Heartbeat = { v: PROTOCOL_VERSION, nodeId, seq: seq++, startedAt: 1, intervalMs: 1000, draining: false, host: 'h', pid: nodeId.charCodeAt(0), inFlight: 0, maxConcurrent: 100, cpu: 0, memory: { rss: 1, heapUsed: 1 }, pools: { p: stats } };
    nc.publish(s.heartbeat(nodeId), encode(hb));
  };
  const verdict = (nodeId: string, o: Partial<HealthVerdict>) => {
    const v: HealthVerdict = { v: 1, nodeId, healthy: true, at: Date.now() + seq++, since: Date.now(), checkerId: 'c', checks: [], pools: {}, ...o };
    nc.publish(s.healthVerdict(nodeId), encode(v));
  };
  async function spread(n: number): Promise<Record<string, number>> {
    hits.clear();
    for (let i = 0; i < n; i++) {
      const m = await nc.request(s.poolAcquire('p'), encode({ v: PROTOCOL_VERSION, pool: 'p', timeoutMs: 1000 }), { timeout: 2000 });
      const r = decode(m.data) as { ok: boolean; error?: { code: string } };
      if (!r.ok) hits.set(r.error!.code, (hits.get(r.error!.code) ?? 0) + 1);
    }
    return Object.fromEntries(hits);
  }
  const settle = async () => { await nc.flush(); await new Promise((r) => setTimeout(r, 50)); };

  before(async () => {
    server = await startNatsServer({ jetstream: false });
    nc = await connect({ servers: server.url });
    bnc = await connect({ servers: server.url });
    for (const id of ['n1', 'n2']) {
      nc.subscribe(s.nodeAcquire(id), { callback: (_e, m) => {
        hits.set(id, (hits.get(id) ?? 0) + 1);
        m.respond(encode(ok({ leaseId: `L-${id}-${seq++}`, nodeId: id, pool: 'p', resourceId: 'r', expiresAt: 0, ttlMs: 1000, reused: false })));
      } });
    }
    b = new Balancer(bnc, silentLogger, {
      prefix: 'shoal', strategy: 'round_robin', performanceWeights: { latency: 0.4, throughput: 0.3, errorRate: 0.2, resource: 0.1 },
      suspectAfterIntervals: 3, goneAfterIntervals: 5, circuitFailureThreshold: 2, circuitCooldownMs: 60_000, warmupMs: 0,
    });
    await b.start();
    heartbeat('n1');
    heartbeat('n2');
    // Alive throughout, however slow the machine.
    beat = setInterval(() => { heartbeat('n1'); heartbeat('n2'); }, 300);
    await settle();
  });
  after(async () => {
    clearInterval(beat);
    await b?.stop(100);
    await bnc?.close();
    await nc?.close();
    await server?.stop();
  });

  it('both healthy: both placed; n1 unhealthy: only n2; healthy again: both', async () => {
    expect(await spread(10)).to.deep.equal({ n1: 5, n2: 5 });
    verdict('n1', { healthy: false, reason: 'ping: no answer' });
    await settle();
    expect(await spread(10)).to.deep.equal({ n2: 10 });
    verdict('n1', { healthy: true });
    await settle();
    expect(await spread(10)).to.deep.equal({ n1: 5, n2: 5 });
  });

  it("a node whose pool's backend is down gets the pool's requests only when no other node can", async () => {
    verdict('n1', { pools: { p: { healthy: false, reason: 'Weaviate down' } } });
    await settle();
    expect(await spread(10)).to.deep.equal({ n2: 10 });
    verdict('n2', { pools: { p: { healthy: false, reason: 'Weaviate down' } } });
    await settle();
    // Down everywhere: requests go on (and would bring back the backend's own error), not NO_NODES.
    expect(await spread(10)).to.deep.equal({ n1: 5, n2: 5 });
  });

  it('every node unhealthy: NO_NODES that says so', async () => {
    verdict('n1', { healthy: false });
    verdict('n2', { healthy: false });
    await settle();
    expect(await spread(3)).to.deep.equal({ NO_NODES: 3 });
    const st = b.status();
    expect(st.nodes.map((n) => [n.nodeId, n.unhealthy, n.health?.healthy])).to.deep.equal([['n1', true, false], ['n2', true, false]]);
  });
});
