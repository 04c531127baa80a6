import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from 'nats';
import { decode, encode, PROTOCOL_VERSION, type Heartbeat, type PoolStats } from '@shoal/protocol';
import { silentLogger } from '@shoal/runtime';
import { Balancer } from '../../services/balancer/src/balancer.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { ROOT } from '../helpers/procs.js';

/**
 * The balancer's status at 10,000 nodes (heartbeats fed straight into its
 * view): a summary per pool plus pages that never exceed the connection's
 * max payload, walked with cursors.
 */
const N = 10_000;

function stats(i: number): PoolStats {
  return {
    kind: 'synthetic', total: 4, idle: i % 3, active: 4 - (i % 3), creating: 0, waiting: 0, min: 0, max: 8, target: 4,
    maxWaiting: 100, weight: 1, latencyMs: 1, execLatencyMs: 1, errorRate: 0, requestRate: 5, reuseRate: 0.9, memoryBytes: 1_000_000, available: true,
  };
}

function hb(i: number): Heartbeat {
  const nodeId = `node-${String(i).padStart(5, '0')}`;
  return {
    v: PROTOCOL_VERSION, nodeId, seq: 1, startedAt: 1, intervalMs: 600_000, draining: false, host: `host-${i}`, pid: 1000 + i,
    inFlight: 0, maxConcurrent: 100, cpu: 0.1, memory: { rss: 1, heapUsed: 1 },
    pools: i % 2 === 0 ? { p: stats(i), q: stats(i) } : { p: stats(i) },
  } as Heartbeat;
}

type Reply = { ok: boolean; data: { summary: { nodes: number; pools: Record<string, { nodes: number; idle: number; placeable: { idle: number; room: number; full: number } }> }; nodes: { nodeId: string }[]; page: { limit: number; returned: number; matched: number; next: string | null } }; error?: { code: string } };

describe('balancer status at 10,000 nodes (paged, real nats-server)', function () {
  this.timeout(60_000);
  const servers: NatsServer[] = [];
  const conns: NatsConnection[] = [];
  const balancers: Balancer[] = [];

  after(async () => {
    for (const b of balancers) await b.stop(100);
    await Promise.all(conns.map((c) => c.close()));
    await Promise.all(servers.map((s) => s.stop()));
  });

  async function setup(maxPayload?: number): Promise<{ nc: NatsConnection; max: number; url: string }> {
    const server = await startNatsServer(maxPayload ? { maxPayload } : {});
    servers.push(server);
    const [bnc, nc] = await Promise.all([connect({ servers: server.url }), connect({ servers: server.url })]);
    conns.push(bnc, nc);
    const b = new Balancer(bnc, silentLogger, {
      prefix: 'shoal', strategy: 'p2c', performanceWeights: { latency: 0.4, throughput: 0.3, errorRate: 0.2, resource: 0.1 },
      suspectAfterIntervals: 3, goneAfterIntervals: 5, circuitFailureThreshold: 2, circuitCooldownMs: 60_000, warmupMs: 0, balancerId: `b${balancers.length}`,
      settingsBucket: `paging_${balancers.length}`,
    });
    balancers.push(b);
    await b.start();
    const now = Date.now();
    for (let i = 0; i < N; i++) b.membership.observe(hb(i), now);
    return { nc, max: nc.info!.max_payload, url: server.url };
  }

  async function ask(nc: NatsConnection, body: Record<string, unknown>): Promise<{ r: Reply; bytes: number }> {
    const m = await nc.request('shoal.admin.status', encode({ v: PROTOCOL_VERSION, ...body }), { timeout: 10_000 });
    return { r: decode(m.data) as Reply, bytes: m.data.length };
  }

  it('summarises every node per pool, pages by id with cursors, filters by pool and node, and stays under max_payload', async () => {
    const { nc, max, url } = await setup();
    const first = await ask(nc, {});
    expect(first.r.ok).to.equal(true);
    expect(first.bytes).to.be.below(max);
    const sum = first.r.data.summary;
    expect(sum.nodes).to.equal(N);
    expect(sum.pools.p!.nodes).to.equal(N);
    expect(sum.pools.q!.nodes).to.equal(N / 2);
    // Nodes with i % 3 > 0 have an idle resource; the others are full (4 of 8 in use, but room to create).
    expect(sum.pools.p!.placeable.idle + sum.pools.p!.placeable.room + sum.pools.p!.placeable.full).to.equal(N);
    expect(sum.pools.p!.placeable.idle).to.equal(Array.from({ length: N }, (_, i) => i).filter((i) => i % 3 > 0).length);
    expect(first.r.data.page).to.include({ limit: 100, returned: 100, matched: N, next: 'node-00099' });

    // Every node exactly once, walking pages of the largest size.
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 20; pages++) {
      const { r, bytes } = await ask(nc, { limit: 1000, ...(cursor ? { cursor } : {}) });
      expect(bytes).to.be.below(max);
      seen.push(...r.data.nodes.map((n) => n.nodeId));
      if (r.data.page.next === null) break;
      cursor = r.data.page.next;
    }
    expect(seen.length).to.equal(N);
    expect(new Set(seen).size).to.equal(N);

    const q = await ask(nc, { pool: 'q', limit: 10 });
    expect(q.r.data.page.matched).to.equal(N / 2);
    expect(q.r.data.nodes.map((n) => n.nodeId)).to.deep.equal(Array.from({ length: 10 }, (_, k) => `node-${String(2 * k).padStart(5, '0')}`));
    const one = await ask(nc, { node: 'node-04242' });
    expect(one.r.data.nodes.map((n) => n.nodeId)).to.deep.equal(['node-04242']);
    const none = await ask(nc, { limit: 0 });
    expect(none.r.data.nodes).to.deep.equal([]);
    expect(none.r.data.summary.nodes).to.equal(N);
    const bad = await ask(nc, { limit: 100_000 });
    expect(bad.r.ok).to.equal(false);
    expect(bad.r.error!.code).to.equal('BAD_REQUEST');

    // The CLI: filters and a page, then the next page from the printed cursor.
    const cli = async (...args: string[]) => (await promisify(execFile)(process.execPath, [join(ROOT, 'bin/shoal.js'), 'status', '--nats', url, ...args], { env: { ...process.env, NO_COLOR: '1' }, maxBuffer: 64 << 20 })).stdout;
    const j = JSON.parse(await cli('--json', '--pool', 'q', '--limit', '3')) as { nodes: { nodeId: string }[]; page: { next: string } };
    expect(j.nodes.map((x) => x.nodeId)).to.deep.equal(['node-00000', 'node-00002', 'node-00004']);
    const text = await cli('--pool', 'q', '--limit', '2', '--cursor', j.page.next);
    expect(text).to.contain('node-00006').and.to.contain('node-00008').and.not.to.contain('node-00004');
    expect(text).to.match(/2 of 5000 nodes shown; next page: --cursor node-00008/);
    expect(text).to.match(/^q +5000 +5000 /m);
  });

  it('shrinks a page that would not fit a small max_payload, and its cursor still leads on', async () => {
    const { nc, max } = await setup(64 * 1024);
    expect(max).to.equal(64 * 1024);
    const { r, bytes } = await ask(nc, { limit: 1000 });
    expect(r.ok).to.equal(true);
    expect(bytes).to.be.below(max);
    expect(r.data.page.limit).to.be.below(1000);
    const next = await ask(nc, { limit: r.data.page.limit, cursor: r.data.page.next! });
    expect(next.r.data.nodes[0]!.nodeId > r.data.page.next!).to.equal(true);
  });
});
