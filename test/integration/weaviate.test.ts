import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, PoolTimeoutError, type Client } from '@shoal/client';
import { aggregateVectorStoreStats, vectorStoreStatsOfNode, type VectorStoreStatsResponse, type WeaviateDriverStats } from '@shoal/protocol';
import { ShoalError, subjects } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { sleep, startPoolNode, startService, type Service } from '../helpers/procs.js';
import { spawnWeaviateStandIn, type StandInProcess } from '../stand-ins/weaviate/process.js';
import type { Faults } from '../stand-ins/weaviate/server.js';

/**
 * The weaviate driver end to end: real weaviate-client in pool-node
 * processes, Shoal's SDK, a balancer process, a real nats-server, and the
 * Weaviate stand-in as its own process (killed and restarted on the same ports
 * to play a Weaviate outage).
 */
const POOL = 'weaviate';
const COLLECTION = 'M_asset_schema';
/** The error an SDK call fails with (ExecCall is PromiseLike, without catch). */
const errorOf = (p: PromiseLike<unknown>): Promise<ShoalError> => Promise.resolve(p).then(() => { throw new Error('expected the call to fail'); }, (e: unknown) => e as ShoalError);
const DESIGN_KEYS = ['enabled', 'total_connections', 'current_active', 'current_idle', 'available_connections', 'total_connections_created', 'total_connections_closed', 'total_requests', 'avg_wait_time', 'health_check_failures'];

describe('weaviate driver (integration: stand-in, pool-nodes, balancer, SDK)', function () {
  this.timeout(60_000);
  let nats: NatsServer;
  let weaviate: StandInProcess;
  let client: Client;
  let dir: string;
  let node: Service & { nodeId: string; httpPort: number | null };
  let balancer: Service;
  const extra: Service[] = [];

  function config(name: string, pool: Record<string, unknown>, options: Record<string, unknown> = {}): string {
    const file = join(dir, `${name}.yaml`);
    const o = { host: '127.0.0.1', port: weaviate.httpPort, grpc_port: weaviate.grpcPort, ...options };
    writeFileSync(file, [
      'node:', '  heartbeat_interval: 200ms', '  drain_grace: 1s', 'pools:', `  ${POOL}:`, '    driver: weaviate',
      ...Object.entries(pool).map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`),
      `    options: ${JSON.stringify(o)}`, '',
    ].join('\n'));
    return file;
  }

  const statsOf = async (port: number | null): Promise<VectorStoreStatsResponse> => (await fetch(`http://127.0.0.1:${port}/vector-store/pool/stats`)).json() as Promise<VectorStoreStatsResponse>;
  const nodeStatus = (nodeId: string) => call<Record<string, unknown>>(client.nc, subjects('shoal').nodeStatus(nodeId), {}, 3000);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-weaviate-it-'));
    [nats, weaviate] = await Promise.all([startNatsServer({ jetstream: false }), spawnWeaviateStandIn()]);
    client = await connect({ servers: [nats.url], name: 'weaviate-it', timeoutMs: 5000 });
    const file = config('main', {
      min_size: 2, max_size: 4, initial_size: 2, acquire_timeout: '5s',
      session_management: { context_reset: false, max_reuse_count: 0 },
      create: { retry_base: '100ms', retry_max: '500ms', timeout: '3s' },
    }, { health_check_interval: '500ms' });
    [node, balancer] = await Promise.all([
      startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: file, SHOAL_NODE_ID: 'wv-1' }),
      (async () => {
        const b = startService('services/balancer/dist/main.js', { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: file, SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info' });
        await b.waitFor((l) => l.msg === 'listening');
        return b;
      })(),
    ]);
    // The balancer learns the node from its heartbeats.
    // Until then the only acceptable answer is "no known node has the pool"; anything else is a failure.
    for (let i = 0; ; i++) {
      try { await client.exec(POOL, 'collections.listAll', {}, { timeoutMs: 1000 }); break; } catch (err) {
        if ((err as { code?: string }).code !== 'POOL_NOT_FOUND' || i >= 100) throw err;
        await sleep(100);
      }
    }
  });

  after(async () => {
    await client?.close();
    await Promise.all([node, balancer, ...extra].map((s) => s?.kill('SIGKILL')));
    await weaviate?.kill();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the design\'s examples: hybrid search on a collection (leased and one-shot), a timeout handled, stats in the design\'s shape', async () => {
    // Seed through Shoal itself.
    expect(await client.exec(POOL, 'collections.create', { name: COLLECTION, properties: [{ name: 'name', dataType: 'text' }, { name: 'sector', dataType: 'text' }] })).to.equal(COLLECTION);
    const seeded = await client.exec(POOL, 'data.insertMany', { collection: COLLECTION, objects: [
      { properties: { name: '삼성전자', sector: '반도체' }, vectors: [0.9, 0.1, 0] },
      { properties: { name: '삼성전자 우선주', sector: '반도체' }, vectors: [0.8, 0.2, 0] },
      { properties: { name: 'LG전자', sector: '가전' }, vectors: [0.1, 0.9, 0] },
    ] }) as { hasErrors: boolean };
    expect(seeded.hasErrors).to.equal(false);

    // with weaviate_pool.get_connection() as client: collection.query.hybrid(query="삼성전자", limit=5) — several queries on one connection.
    // Which objects match and in what order is the stand-in's own ranking, not Shoal's: assert what
    // Shoal controls — the arguments on the wire, and that the answer is decoded whole and in wire order.
    type Hybrid = { objects: { uuid: string; properties: { name: string }; metadata: { score?: number } }[] };
    const answers = await client.withLease(POOL, async (lease) => {
      const out: Hybrid[] = [];
      for (const q of ['삼성전자', 'LG전자']) out.push(await lease.exec('query.hybrid', { collection: COLLECTION, query: q, limit: 5 }) as Hybrid);
      return out;
    });
    const wire = (await weaviate.searches()).slice(-2);
    expect(wire.map((w) => [w.kind, w.collection, w.query, w.limit])).to.deep.equal([['hybrid', COLLECTION, '삼성전자', 5], ['hybrid', COLLECTION, 'LG전자', 5]]);
    answers.forEach((a, i) => expect(a.objects.map((o) => o.uuid), `query ${i}`).to.deep.equal(wire[i]!.returned.map((r) => r.id)));
    for (const o of answers.flatMap((a) => a.objects)) expect(['삼성전자', '삼성전자 우선주', 'LG전자']).to.include(o.properties.name);
    // The same search one-shot, through the balancer, with the score decoded as sent.
    const one = await client.exec(POOL, 'query.hybrid', { collection: COLLECTION, query: '삼성전자', limit: 5, alpha: 0.3, returnMetadata: ['score'] }) as Hybrid;
    const sent = (await weaviate.searches()).at(-1)!;
    expect([sent.kind, sent.query, sent.alpha, sent.limit]).to.deep.equal(['hybrid', '삼성전자', Math.fround(0.3), 5]);
    expect(one.objects.map((o) => o.uuid)).to.deep.equal(sent.returned.map((r) => r.id));
    expect(one.objects.length).to.be.at.least(1);
    for (const o of one.objects) expect(o.uuid).to.match(/^[0-9a-f-]{36}$/);
    expect(one.objects.map((o) => o.metadata.score)).to.deep.equal(sent.returned.map((r) => Math.fround(r.score!)));
    const byVector = await client.exec(POOL, 'query.nearVector', { collection: COLLECTION, vector: [0.1, 0.9, 0], limit: 1, includeVector: true }) as { objects: { uuid: string; properties: { name: string }; vectors: { default: number[] } }[] };
    const nv = (await weaviate.searches()).at(-1)!;
    expect([nv.kind, nv.limit, nv.vector]).to.deep.equal(['nearVector', 1, [Math.fround(0.1), Math.fround(0.9), 0]]);
    expect(byVector.objects.map((o) => o.uuid)).to.deep.equal(nv.returned.map((r) => r.id));
    // The vector comes back decoded from its float32 bytes: the one stored for that object.
    const stored: Record<string, number[]> = { '삼성전자': [0.9, 0.1, 0], '삼성전자 우선주': [0.8, 0.2, 0], 'LG전자': [0.1, 0.9, 0] };
    expect(byVector.objects[0]!.vectors.default).to.deep.equal(stored[byVector.objects[0]!.properties.name]!.map(Math.fround));

    // try: get_connection(timeout=...) except TimeoutError — every connection held, the next acquire times out.
    const held = await Promise.all([0, 1, 2, 3].map(() => client.acquire(POOL, { nodeId: node.nodeId, timeoutMs: 3000 })));
    const t0 = Date.now();
    const err = await client.acquire(POOL, { timeoutMs: 400 }).catch((e) => e);
    expect(err).to.be.instanceOf(PoolTimeoutError);
    expect(Date.now() - t0, 'answered about its 400 ms deadline, not left hanging').to.be.below(10_000);
    const during = await statsOf(node.httpPort);
    expect(during.stats).to.include({ total_connections: 4, current_active: 4, current_idle: 0, available_connections: 0 });
    await Promise.all(held.map((l) => l.release()));
    // An operation slower than its deadline: the caller gets a typed error in time, the node is fine after.
    await weaviate.faults({ slowMs: 1500 });
    const slow = await errorOf(client.exec(POOL, 'query.fetchObjects', { collection: COLLECTION, limit: 5 }, { timeoutMs: 500 }));
    expect(slow).to.be.instanceOf(ShoalError);
    expect(slow.code).to.be.oneOf(['POOL_TIMEOUT', 'UNAVAILABLE']);
    await weaviate.clearFaults();

    // stats = weaviate_pool.get_stats(): per node over HTTP, cluster-wide from the nodes' status.
    const res = await statsOf(node.httpPort);
    expect(res.success).to.equal(true);
    expect(Object.keys(res.stats)).to.deep.equal(DESIGN_KEYS);
    expect(res.stats.enabled).to.equal(true);
    expect(res.stats.total_connections).to.be.within(2, 4);
    expect(res.stats.current_active + res.stats.current_idle).to.equal(res.stats.total_connections);
    expect(res.stats.total_connections_created).to.be.at.least(4);
    expect(res.stats.total_requests).to.be.at.least(8);
    expect(res.stats.avg_wait_time).to.be.a('number').and.at.least(0);
    const conns = await (await fetch(`http://127.0.0.1:${node.httpPort}/vector-store/pool/connections`)).json() as { connections: { id: number; age: number; last_used: number; in_use: boolean; alive: boolean }[] };
    expect(conns.connections.length).to.equal(res.stats.total_connections);
    for (const c of conns.connections) expect(Object.keys(c)).to.deep.equal(['id', 'age', 'last_used', 'in_use', 'alive']);
    const perNode = vectorStoreStatsOfNode(await nodeStatus(node.nodeId));
    expect(perNode).to.have.length(1);
    const cluster = aggregateVectorStoreStats(perNode as WeaviateDriverStats[]);
    expect(Object.keys(cluster.stats)).to.deep.equal(DESIGN_KEYS);
    expect(cluster.stats.total_connections_created).to.be.at.least(res.stats.total_connections_created);
    // The same, cluster-wide, served by the balancer at the design's path.
    const bPort = (await balancer.waitFor((l) => l.msg === 'listening')).httpPort as number;
    const fromBalancer = await statsOf(bPort);
    expect(fromBalancer.success).to.equal(true);
    expect(Object.keys(fromBalancer.stats)).to.deep.equal(DESIGN_KEYS);
    expect(fromBalancer.stats.total_connections_created).to.be.at.least(res.stats.total_connections_created);
    expect(fromBalancer.stats.total_requests).to.be.at.least(res.stats.total_requests);
  });

  it('bad ops and bad arguments are BAD_REQUEST, one-shot and leased; the pool keeps serving', async () => {
    const codeOf = (p: PromiseLike<unknown>) => Promise.resolve(p).then(() => 'ok', (e: unknown) => (e as ShoalError).code);
    expect(await codeOf(client.exec(POOL, 'eval', { code: 'process.exit()' }))).to.equal('BAD_REQUEST');
    expect(await codeOf(client.exec(POOL, 'query.hybrid', { collection: COLLECTION }))).to.equal('BAD_REQUEST');
    const bad = await errorOf(client.exec(POOL, 'query.fetchObjects', { collection: COLLECTION, limit: -1 }));
    expect(bad.code).to.equal('BAD_REQUEST');
    expect(bad.message).to.contain('limit: expected an integer from 1 to 10000');
    await client.withLease(POOL, async (lease) => {
      expect(await codeOf(lease.exec('data.insert', { collection: COLLECTION, properties: { 'bad key': 1 } }))).to.equal('BAD_REQUEST');
      expect(await codeOf(lease.exec('collections.drop', { name: COLLECTION }))).to.equal('BAD_REQUEST');
      // A Weaviate error: DRIVER_ERROR with Weaviate's message, not retryable.
      const dup = await lease.exec('collections.create', { name: COLLECTION }).then(() => undefined, (e: unknown) => e as ShoalError);
      expect([dup?.code, dup?.details?.retryable, dup?.details?.status]).to.deep.equal(['DRIVER_ERROR', false, 422]);
      expect(dup?.message).to.contain(`class name ${COLLECTION} already exists`);
      expect(await lease.exec('length', { collection: COLLECTION })).to.equal(3);
    });
  });

  it('Weaviate stopped then restarted: retryable errors while down, healed after, no leaked connection', async () => {
    const direct = { nodeId: node.nodeId, timeoutMs: 4000 };
    await weaviate.kill('SIGKILL');
    const errs: ShoalError[] = [];
    const until = Date.now() + 2500;
    while (Date.now() < until) {
      const t0 = Date.now();
      const e = await client.exec(POOL, 'collections.listAll', {}, direct).then(() => undefined, (x: unknown) => x as ShoalError);
      expect(e, 'an op succeeded while Weaviate was down').to.be.instanceOf(ShoalError);
      expect(Date.now() - t0, `${e!.code} outlived its deadline`).to.be.below(direct.timeoutMs + 2000);
      errs.push(e!);
      await sleep(100);
    }
    for (const e of errs) {
      expect(e.code, e.message).to.be.oneOf(['WEAVIATE_UNAVAILABLE', 'DRIVER_ERROR']);
      expect(e.details?.retryable, e.message).to.equal(true);
    }
    expect(errs.filter((e) => e.code === 'WEAVIATE_UNAVAILABLE').length).to.be.at.least(errs.length - 1);
    // The pool says why it cannot serve.
    const st = await nodeStatus(node.nodeId) as { pools: Record<string, { available: boolean; reason?: string }> };
    expect(st.pools[POOL]!.available).to.equal(false);
    expect(st.pools[POOL]!.reason).to.match(/unreachable/i);

    weaviate = await weaviate.restart();
    let healedAfter = -1;
    const t0 = Date.now();
    while (Date.now() - t0 < 10_000) {
      if (await client.exec(POOL, 'collections.listAll', {}, { ...direct, timeoutMs: 2000 }).then(() => true, () => false)) { healedAfter = Date.now() - t0; break; }
      await sleep(100);
    }
    expect(healedAfter, 'healed within 10 s').to.be.at.least(0);
    // Steady again: a burst of queries, then count what the node holds at the stand-in.
    await Promise.all(Array.from({ length: 40 }, () => client.exec(POOL, 'collections.listAll', {}, direct)));
    // Sockets of the outage may still be closing: poll until the counts settle (a generous deadline).
    // REST sockets are Node's global fetch pool's (weaviate-client's own http.Agent is never used; docs/weaviate.md):
    // it holds as many as requests ran at once, and a bit over when a request is sent just as another ends.
    // At most two per connection (a connect's two GET /v1/meta, or an isLive+isReady probe), plus the pool's
    // shared probes (isLive+isReady while Weaviate is known down, the backend's GET ready): 2 × 4 + 3.
    const bound = 2 * 4 + 3;
    let s = await weaviate.stats();
    for (const end = Date.now() + 10_000; (s.grpc.open !== 1 || s.http.open > bound) && Date.now() < end; s = await weaviate.stats()) await sleep(50);
    expect(s.grpc.open, 'one shared HTTP/2 connection for all the pool\'s clients').to.equal(1);
    expect(s.http.open, 'HTTP keep-alive sockets bounded by the pool size').to.be.at.most(bound);
    // Not leaked: the same burst again is served on the sockets held, none opened or left over.
    await Promise.all(Array.from({ length: 40 }, () => client.exec(POOL, 'collections.listAll', {}, direct)));
    const again = await weaviate.stats();
    expect(again.http.open, 'sockets after a second burst').to.be.at.most(bound);
    expect(again.http.connects - s.http.connects, 'new TCP connections for a second, identical burst').to.be.at.most(2);
    const after = await statsOf(node.httpPort);
    // The clients that lost Weaviate were closed and replaced.
    expect(after.stats.total_connections_closed).to.be.at.least(2);
    expect(after.stats.total_connections_created - after.stats.total_connections_closed).to.equal(after.stats.total_connections);
    expect(after.stats.total_connections).to.be.within(2, 4);
    // The same story in the Prometheus scrape: the four shoal_weaviate_* counters.
    const text = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
    const metric = (name: string, labels = '') => {
      const m = new RegExp(`^${name}\\{pool="${POOL}",node="${node.nodeId}"${labels}\\} (\\S+)$`, 'm').exec(text);
      return m ? Number(m[1]) : undefined;
    };
    const nowStats = (await statsOf(node.httpPort)).stats;
    // (A labelled counter has no series until its first count.)
    expect(metric('shoal_weaviate_connections_created_total')).to.equal(nowStats.total_connections_created);
    expect(metric('shoal_weaviate_connections_closed_total')).to.equal(nowStats.total_connections_closed).and.to.be.at.least(2);
    expect(metric('shoal_weaviate_health_check_failures_total') ?? 0).to.equal(nowStats.health_check_failures);
    expect(metric('shoal_weaviate_requests_total', ',op="collections.listAll",result="success"')).to.be.at.least(40);
    // (Only calls that reached for Weaviate count: once the pool knows it is down it refuses before calling.)
    expect(metric('shoal_weaviate_requests_total', ',op="collections.listAll",result="unavailable"')).to.be.at.least(1);
  });

  it('failed creates leave no socket behind: gRPC port unreachable (HTTP up), and /v1/meta 503 while starting', async () => {
    // A port nothing listens on: a Weaviate whose gRPC port is unreachable (or a misconfigured grpc_port).
    const closed = await new Promise<number>((resolve) => { const srv = createNetServer().listen(0, '127.0.0.1', () => { const { port } = srv.address() as AddressInfo; srv.close(() => resolve(port)); }); });
    const cases: { name: string; options: Record<string, unknown>; faults?: Partial<Faults> }[] = [
      { name: 'grpc-unreachable', options: { grpc_port: closed, init_timeout: '500ms' } },
      { name: 'starting', options: {}, faults: { starting: true } },
    ];
    for (const c of cases) {
      // A Weaviate of its own, so that no other node's traffic is counted (and its faults touch no one else).
      const wv = await spawnWeaviateStandIn();
      const file = config(c.name, {
        min_size: 2, max_size: 2, initial_size: 2,
        create: { retry_base: '20ms', retry_max: '50ms', timeout: '3s' },
      }, { port: wv.httpPort, grpc_port: wv.grpcPort, health_check_interval: 0, ...c.options });
      if (c.faults) await wv.faults(c.faults);
      const n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: file, SHOAL_NODE_ID: `wv-${c.name}` });
      try {
        // Each failed create sends two GET /v1/meta: wait for two dozen failures.
        let s = await wv.stats();
        for (const end = Date.now() + 30_000; s.http.requests < 2 * 24; s = await wv.stats()) {
          if (Date.now() > end) throw new Error(`${c.name}: fewer than 24 failed creates within 30 s (${s.http.requests / 2})`);
          await sleep(100);
        }
        expect((await statsOf(n.httpPort)).stats.total_connections, `${c.name}: no create succeeded`).to.equal(0);
        // Sockets follow concurrency (two creates at once, two GETs each, and a spare when one is sent just as
        // another ends; the restart test above), not the number of failed creates: a leak would hold 24.
        expect(s.http.open, `${c.name}: HTTP sockets after ${s.http.requests / 2} failed creates`).to.be.at.most(2 * 2 + 2);
      } finally {
        await n.kill('SIGTERM');
        await wv.kill();
      }
    }
  });

  it('lifetime recycling: connections retire at max_lifetime and are replaced, without piling up sockets', async () => {
    const file = config('lifetime', {
      min_size: 2, max_size: 2, initial_size: 2,
      session_management: { max_lifetime: '600ms', lifetime_jitter: 0, cleanup_interval: '200ms', context_reset: false, max_reuse_count: 0 },
    }, { health_check_interval: 0 });
    const n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: file, SHOAL_NODE_ID: 'wv-life' });
    extra.push(n);
    const before = await weaviate.stats();
    const until = Date.now() + 2500;
    while (Date.now() < until) {
      await Promise.all([0, 1].map(() => client.exec(POOL, 'collections.listAll', {}, { nodeId: n.nodeId })));
      await sleep(50);
    }
    const st = (await statsOf(n.httpPort)).stats;
    expect(st.total_connections_created, 'recycled at least twice over').to.be.at.least(6);
    expect(st.total_connections_closed).to.be.at.least(st.total_connections_created - 2);
    const conns = await (await fetch(`http://127.0.0.1:${n.httpPort}/vector-store/pool/connections`)).json() as { connections: { age: number }[] };
    for (const c of conns.connections) expect(c.age).to.be.below(1.5);
    const s = await weaviate.stats();
    // Nothing piles up: one HTTP/2 connection per node process (this one's and the main node's), a few
    // keep-alive sockets. (When every client of a process is replaced at once the HTTP/2 connection closes
    // with the last channel and the next client opens a new one; docs/weaviate.md.)
    expect(s.grpc.open).to.be.at.most(2);
    expect(s.grpc.connects - before.grpc.connects).to.be.at.most(st.total_connections_created);
    expect(s.http.open - before.http.open).to.be.at.most(4);
    await n.kill('SIGTERM');
  });

  it('VECTOR_STORE_USE_POOL=false: the same ops on a fresh client per call, closed after it', async () => {
    const file = config('legacy', { min_size: 1, max_size: 2, initial_size: 1 });
    const n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: file, SHOAL_NODE_ID: 'wv-legacy', VECTOR_STORE_USE_POOL: 'false' });
    extra.push(n);
    const before = await weaviate.stats();
    const direct = { nodeId: n.nodeId };
    expect(await client.exec(POOL, 'collections.exists', { name: 'Nope' }, direct)).to.equal(false);
    for (let i = 0; i < 4; i++) expect(await client.exec(POOL, 'collections.listAll', {}, direct)).to.be.an('array');
    const bad = await errorOf(client.exec(POOL, 'query.hybrid', {}, direct));
    expect(bad.code).to.equal('BAD_REQUEST');
    const st = (await statsOf(n.httpPort)).stats;
    expect(st).to.include({ enabled: false, total_connections: 0, current_active: 0, total_connections_created: 5, total_connections_closed: 5 });
    const s = await weaviate.stats();
    // Each call paid a whole connect (GET /v1/meta twice, a gRPC health check) before its op.
    expect(s.grpc.requests - before.grpc.requests).to.equal(5);
    // (HTTP: at least 3 per call; the main node's health probes count here too.)
    expect(s.http.requests - before.http.requests).to.be.at.least(5 * 2 + 5);
    await n.kill('SIGTERM');
  });

  it('counts failed health probes of idle connections (shoal_weaviate_health_check_failures_total) and replaces them', async () => {
    const file = config('probe', { min_size: 1, max_size: 1, initial_size: 1 }, { health_check_interval: '200ms' });
    const n = await startPoolNode({ SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: file, SHOAL_NODE_ID: 'wv-probe' });
    extra.push(n);
    const failures = async () => {
      const text = await (await fetch(`http://127.0.0.1:${n.httpPort}/metrics`)).text();
      return Number(new RegExp(`^shoal_weaviate_health_check_failures_total\\{pool="${POOL}",node="wv-probe"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    };
    expect(await failures()).to.equal(0);
    // Weaviate goes away with no traffic at all: only the periodic probe can notice.
    await weaviate.down();
    try {
      for (const end = Date.now() + 15_000; (await failures()) < 1;) {
        if (Date.now() > end) throw new Error('no failed probe counted within 15 s');
        await sleep(50);
      }
      expect((await statsOf(n.httpPort)).stats.health_check_failures).to.be.at.least(1);
    } finally {
      await weaviate.up();
    }
    // Healed: the next call works on a replaced connection.
    for (let i = 0; ; i++) {
      const ok = await client.exec(POOL, 'collections.listAll', {}, { nodeId: n.nodeId, timeoutMs: 2000 }).then(() => true, () => false);
      if (ok) break;
      if (i > 100) throw new Error('never healed after up()');
      await sleep(100);
    }
    await n.kill('SIGTERM');
  });
});
