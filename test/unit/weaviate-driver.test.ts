import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import weaviate from 'weaviate-client';
import { systemClock, type PoolView } from '@shoal/pool-node';
import { aggregateVectorStoreStats, classify, parseOp, toWire, vectorStoreStatsOfNode, weaviateDriver, type Conn } from '@shoal/pool-node/weaviate';
import { decode, encode, ShoalError } from '@shoal/protocol';
import { freePort } from '../helpers/nats-server.js';
import { ROOT } from '../helpers/procs.js';
import { startWeaviateStandIn, type WeaviateStandIn } from '../stand-ins/weaviate/server.js';

const badRequest = (op: string, args: unknown): ShoalError => {
  try {
    parseOp(op, args);
  } catch (err) {
    expect(err).to.be.instanceOf(ShoalError);
    expect((err as ShoalError).code).to.equal('BAD_REQUEST');
    return err as ShoalError;
  }
  return expect.fail(`${op} ${JSON.stringify(args)} was accepted`);
};

type Failure = ShoalError & { details: Record<string, unknown> };
/** The error a call fails with; a success fails the test. */
async function failure(p: PromiseLike<unknown>): Promise<Failure> {
  try {
    await p;
  } catch (err) {
    return err as Failure;
  }
  throw new Error('expected the call to fail');
}

const DESIGN_KEYS = ['enabled', 'total_connections', 'current_active', 'current_idle', 'available_connections', 'total_connections_created', 'total_connections_closed', 'total_requests', 'avg_wait_time', 'health_check_failures'];

describe('weaviate driver: ops, arguments, results, errors, stats (no server)', () => {
  it('refuses ops outside the allow-list and bad arguments with BAD_REQUEST naming the path', () => {
    expect(badRequest('eval', {}).message).to.contain('no op "eval"');
    expect(badRequest('collections.deleteAll', {}).message).to.contain('collections.listAll');
    expect(badRequest('__proto__', {}).message).to.contain('no op');
    const cases: [string, unknown, string][] = [
      ['query.fetchObjects', { collection: 'Doc', limt: 3 }, 'limt: unknown argument'],
      ['query.fetchObjects', { collection: 'Doc', limit: 'ten' }, 'limit: expected an integer from 1 to 10000'],
      ['query.fetchObjects', { collection: 'Doc', limit: 0 }, 'limit: expected an integer'],
      ['query.fetchObjects', { limit: 5 }, 'collection: expected a non-empty string'],
      ['query.fetchObjects', { collection: 'no spaces' }, 'collection: expected a collection name'],
      ['query.fetchObjects', 'Doc', 'expected a mapping of arguments'],
      ['query.nearVector', { collection: 'Doc', vector: [1, 'x'] }, 'vector[1]: expected a finite number'],
      ['query.nearVector', { collection: 'Doc' }, 'vector: expected a vector'],
      ['query.hybrid', { collection: 'Doc', query: 'x', alpha: 2 }, 'alpha: expected a number from 0 to 1'],
      ['query.hybrid', { collection: 'Doc', query: 'x', fusionType: 'Best' }, 'fusionType: expected one of Ranked, RelativeScore'],
      ['query.fetchObjects', { collection: 'Doc', returnMetadata: ['distance', 'vibes'] }, 'returnMetadata[1]: expected one of'],
      ['query.fetchObjects', { collection: 'Doc', filters: { property: 'n', op: 'approx', value: 1 } }, 'filters.op: expected one of equal'],
      ['query.fetchObjects', { collection: 'Doc', filters: { and: [{ property: 'n', op: 'equal', value: 1 }, { property: 'n', op: 'like', value: 3 }] } }, 'filters.and[1].value: expected a non-empty string'],
      ['query.fetchObjects', { collection: 'Doc', filters: { property: '_id', op: 'equal', value: 'nope' } }, 'filters.value: expected a UUID'],
      ['data.deleteMany', { collection: 'Doc' }, 'where: expected a filter'],
      ['data.insert', { collection: 'Doc', properties: { 'bad name': 1 } }, 'properties.bad name: expected a property name'],
      ['data.insert', { collection: 'Doc', properties: { n: Number.NaN } }, 'properties.n: expected a finite number'],
      ['data.update', { collection: 'Doc', id: '123' }, 'id: expected a UUID'],
      ['collections.create', { name: 'Doc', properties: [{ name: 't', dataType: 'string' }] }, 'properties[0].dataType: expected one of text'],
      ['collections.create', { name: 'Doc', vectorizer: 'text2vec-openai' }, 'vectorizer: unknown argument'],
      ['query.fetchObjects', { collection: 'Doc', groupBy: { property: 'x' } }, 'groupBy: unknown argument'],
    ];
    for (const [op, args, msg] of cases) expect(badRequest(op, args).message, `${op} ${JSON.stringify(args)}`).to.contain(msg);
  });

  it('maps plain-data filters onto weaviate.filter, and sorts, exactly as the client builds them', () => {
    const f = (filters: unknown) => (parseOp('query.fetchObjects', { collection: 'Doc', filters }).args as { filters: unknown }).filters;
    const id = '6f1e4c8e-1d7a-4b8e-9a53-2b6a1c3d4e5f';
    expect(f({ property: 'year', op: 'greaterThan', value: 2020 })).to.deep.equal(weaviate.filter.byProperty('year').greaterThan(2020));
    expect(f({ property: 'body', length: true, op: 'lessThan', value: 10 })).to.deep.equal(weaviate.filter.byProperty('body', true).lessThan(10));
    expect(f({ property: '_id', op: 'containsAny', value: [id] })).to.deep.equal(weaviate.filter.byId().containsAny([id]));
    const d = new Date('2024-05-01T00:00:00Z');
    expect(f({ property: '_creationTime', op: 'greaterOrEqual', value: '2024-05-01T00:00:00Z' })).to.deep.equal(weaviate.filter.byCreationTime().greaterOrEqual(d));
    expect(f({ or: [{ property: 'a', op: 'like', value: '삼성*' }, { not: { property: 'b', op: 'isNull', value: true } }] }))
      .to.deep.equal({ operator: 'Or', filters: [weaviate.filter.byProperty('a').like('삼성*'), { operator: 'Not', filters: [weaviate.filter.byProperty('b').isNull(true)], value: null }], value: null });
  });

  it('keeps ids, properties, metadata and vectors intact through msgpack', () => {
    const result = {
      objects: [{
        uuid: '6f1e4c8e-1d7a-4b8e-9a53-2b6a1c3d4e5f',
        metadata: { creationTime: new Date(1_700_000_000_123), distance: 0.123456789, score: undefined },
        properties: { title: '삼성전자', n: 3, tags: ['a', 'b'], nested: { x: [1.5, undefined] }, when: new Date('2024-01-02T03:04:05Z') },
        references: undefined,
        vectors: { default: Array.from(new Float32Array([0.1, 0.2, 0.3])), named: new Float32Array([1, 2]) },
      }],
    };
    const back = decode(encode({ result: toWire(result) })).result as typeof result;
    const o = back.objects[0]!;
    expect(o.uuid).to.equal(result.objects[0]!.uuid);
    expect(o.metadata).to.deep.equal({ creationTime: new Date(1_700_000_000_123), distance: 0.123456789 });
    expect(o.properties).to.deep.equal({ title: '삼성전자', n: 3, tags: ['a', 'b'], nested: { x: [1.5, null] }, when: new Date('2024-01-02T03:04:05Z') });
    expect(o).to.not.have.property('references');
    expect(o.vectors.default).to.deep.equal(result.objects[0]!.vectors.default); // float32 values exact in float64
    expect(o.vectors.named).to.deep.equal([1, 2]);
  });

  it('classifies client errors: unreachable, Weaviate errors with their message and retryability, timeouts, bad input', () => {
    const named = (name: string, message: string, extra: Record<string, unknown> = {}) => Object.assign(new Error(message), { name }, extra);
    const down = classify(named('WeaviateStartUpError', 'Weaviate startup failed with message: Weaviate failed to startup with message: fetch failed'), 'connect');
    expect([down.code, down.details?.retryable]).to.deep.equal(['WEAVIATE_UNAVAILABLE', true]);
    const refused = classify(Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8080'), { code: 'ECONNREFUSED' }) }), 'data.insert');
    expect(refused.code).to.equal('WEAVIATE_UNAVAILABLE');
    expect(refused.message).to.contain('ECONNREFUSED');
    const grpcDown = classify(named('WeaviateQueryError', 'Query call with protocol gRPC failed with message: /weaviate.v1.Weaviate/Search UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED'), 'query.hybrid');
    expect(grpcDown.code).to.equal('WEAVIATE_UNAVAILABLE');
    const v422 = classify(named('WeaviateUnexpectedStatusCodeError', 'The request to Weaviate failed with status code: 422 and message: {"error":[{"message":"class name Doc already exists"}]}', { code: 422 }), 'collections.create');
    expect([v422.code, v422.details?.retryable, v422.details?.status]).to.deep.equal(['DRIVER_ERROR', false, 422]);
    expect(v422.message).to.equal('collections.create: Weaviate answered 422: class name Doc already exists');
    const v503 = classify(named('WeaviateUnexpectedStatusCodeError', 'The request to Weaviate failed with status code: 503 and message: overloaded', { code: 503 }), 'data.insert');
    expect([v503.code, v503.details?.retryable]).to.deep.equal(['DRIVER_ERROR', true]);
    const internal = classify(named('WeaviateQueryError', 'Query call with protocol gRPC failed with message: /weaviate.v1.Weaviate/Search INTERNAL: shard not ready'), 'query.bm25');
    expect([internal.code, internal.details?.retryable, internal.details?.grpcStatus, internal.details?.cause]).to.deep.equal(['DRIVER_ERROR', true, 'INTERNAL', 'shard not ready']);
    const unknown = classify(named('WeaviateQueryError', 'Query call with protocol gRPC failed with message: /weaviate.v1.Weaviate/Search UNKNOWN: no vectorizer'), 'query.nearText');
    expect([unknown.code, unknown.details?.retryable]).to.deep.equal(['DRIVER_ERROR', false]);
    const slow = classify(named('WeaviateRequestTimeoutError', 'Weaviate request timed out with message: timed out after 30ms'), 'query.bm25');
    expect([slow.code, slow.details?.retryable, slow.details?.timeout]).to.deep.equal(['DRIVER_ERROR', true, true]);
    expect(classify(named('WeaviateInvalidInputError', 'Invalid input provided: bad vector'), 'query.nearVector').code).to.equal('BAD_REQUEST');
  });

  it('aggregates per-node stats into the design shape; picks weaviate pools out of node status', () => {
    const node = (o: Record<string, unknown>) => ({ enabled: true, total_connections: 2, current_active: 1, current_idle: 1, available_connections: 1, total_connections_created: 3, total_connections_closed: 1, total_requests: 10, avg_wait_time: 0.01, health_check_failures: 0, ...o });
    const out = aggregateVectorStoreStats([
      { success: true, stats: node({}) },
      { kind: 'weaviate', stats: node({ total_requests: 30, avg_wait_time: 0.05, health_check_failures: 2 }), connections: [] },
      node({ enabled: false, total_connections: 0, current_active: 0, current_idle: 0, available_connections: 0, total_requests: 0, avg_wait_time: 0 }),
      undefined, { error: 'no answer' }, 42,
    ]);
    expect(out.success).to.equal(true);
    expect(Object.keys(out.stats)).to.deep.equal(DESIGN_KEYS);
    expect(out.stats).to.deep.equal({
      enabled: true, total_connections: 4, current_active: 2, current_idle: 2, available_connections: 2, total_connections_created: 9,
      total_connections_closed: 3, total_requests: 40, avg_wait_time: 0.04, health_check_failures: 2,
    });
    expect(aggregateVectorStoreStats([]).stats).to.include({ enabled: false, total_connections: 0, avg_wait_time: 0 });
    const status = { pools: { synthetic: { kind: 'synthetic' }, w: { kind: 'weaviate', driver: { kind: 'weaviate', stats: node({}), connections: [] } } } };
    expect(vectorStoreStatsOfNode(status)).to.have.length(1);
    expect(vectorStoreStatsOfNode(status, 'other')).to.have.length(0);
    expect(vectorStoreStatsOfNode(undefined)).to.deep.equal([]);
  });
});

describe('weaviate driver against the stand-in (in-process)', function () {
  this.timeout(20_000);
  let s: WeaviateStandIn;
  const ac = new AbortController();
  const ctx = { emit() {}, signal: ac.signal };
  const pool: PoolView = { name: 'w', numbers: () => ({ total: 1, active: 0, idle: 1, waiting: 0 }), meter: { acquires: 0, acquireLatency: { value: 0 } } };
  const logs: string[] = [];
  const log = { debug() {}, info: (m: string) => { logs.push(m); }, warn: (m: string) => { logs.push(m); }, error: (m: string) => { logs.push(m); } };
  const driver = (options: Record<string, unknown> = {}) => weaviateDriver({ clock: systemClock, random: Math.random, poolName: 'w', log, options: { host: '127.0.0.1', port: s.httpPort, grpc_port: s.grpcPort, ...options } });

  before(async () => { s = await startWeaviateStandIn(); });
  after(async () => { await s?.close(); });
  afterEach(() => { s.clearFaults(); });

  it('runs every op of the allow-list; results come back as weaviate-client returns them', async () => {
    const d = driver();
    const c = await d.create({ resourceId: 'r1', signal: ac.signal });
    const x = (op: string, args: unknown) => d.exec(c, op, args, ctx);
    expect(await x('collections.create', { name: 'Article', properties: [{ name: 'title', dataType: 'text' }, { name: 'year', dataType: 'int' }, { name: 'tags', dataType: 'text[]' }] })).to.equal('Article');
    expect(await x('collections.exists', { name: 'Article' })).to.equal(true);
    expect((await x('collections.listAll', {}) as { name: string }[]).map((c) => c.name)).to.include('Article');
    expect(await x('collections.config', { name: 'Article' })).to.deep.include({ name: 'Article' });
    const id = await x('data.insert', { collection: 'Article', properties: { title: '삼성전자 주가 상승', year: 2024, tags: ['kr'] }, vectors: [1, 0, 0] }) as string;
    const many = await x('data.insertMany', { collection: 'Article', objects: [{ properties: { title: 'LG전자 실적', year: 2023 }, vectors: [0, 1, 0] }, { properties: { title: '삼성전자 반도체', year: 2025 }, vectors: [0.9, 0.1, 0] }] }) as { hasErrors: boolean; uuids: Record<string, string> };
    expect(many.hasErrors).to.equal(false);
    expect(Object.keys(many.uuids)).to.have.length(2);
    expect(await x('data.exists', { collection: 'Article', id })).to.equal(true);
    expect(await x('data.update', { collection: 'Article', id, properties: { year: 2026 } })).to.equal(null);
    const got = await x('query.fetchObjectById', { collection: 'Article', id, includeVector: true }) as { uuid: string; properties: Record<string, unknown>; vectors: Record<string, number[]>; metadata: { creationTime: Date } };
    expect(got.uuid).to.equal(id);
    expect(got.properties).to.deep.equal({ title: '삼성전자 주가 상승', year: 2026, tags: ['kr'] });
    expect(got.vectors.default).to.deep.equal([1, 0, 0]);
    expect(got.metadata.creationTime).to.be.instanceOf(Date);
    const fetched = await x('query.fetchObjects', { collection: 'Article', limit: 5, sort: [{ property: 'year', ascending: false }], filters: { property: 'year', op: 'greaterThan', value: 2023 } }) as { objects: { properties: { year: number } }[] };
    expect(fetched.objects.map((o) => o.properties.year)).to.deep.equal([2026, 2025]);
    const near = await x('query.nearVector', { collection: 'Article', vector: [1, 0, 0], limit: 2, returnMetadata: ['distance'] }) as { objects: { uuid: string; metadata: { distance: number } }[] };
    expect(near.objects[0]!.uuid).to.equal(id);
    expect(near.objects[0]!.metadata.distance).to.be.closeTo(0, 1e-6);
    const hybrid = await x('query.hybrid', { collection: 'Article', query: '삼성전자', limit: 5, returnMetadata: ['score'] }) as { objects: { properties: { title: string } }[] };
    expect(hybrid.objects.map((o) => o.properties.title)).to.have.members(['삼성전자 주가 상승', '삼성전자 반도체']);
    const bm25 = await x('query.bm25', { collection: 'Article', query: '반도체', queryProperties: ['title^2'] }) as { objects: unknown[] };
    expect(bm25.objects).to.have.length(1);
    const nearObj = await x('query.nearObject', { collection: 'Article', id, limit: 1 }) as { objects: { uuid: string }[] };
    expect(nearObj.objects[0]!.uuid).to.equal(id);
    const nearText = await failure(x('query.nearText', { collection: 'Article', query: 'chips' }));
    expect([nearText.code, nearText.details.retryable]).to.deep.equal(['DRIVER_ERROR', false]);
    expect(nearText.message).to.contain('no vectorizer module');
    expect(await x('aggregate.overAll', { collection: 'Article', filters: { property: 'year', op: 'lessThan', value: 2025 } })).to.deep.include({ totalCount: 1 });
    expect(await x('length', { collection: 'Article' })).to.equal(3);
    // PUT answers with the object as stored (weaviate-client passes it on).
    expect(await x('data.replace', { collection: 'Article', id, properties: { title: 'replaced', year: 1 } })).to.deep.include({ id, properties: { title: 'replaced', year: 1 } });
    const dm = await x('data.deleteMany', { collection: 'Article', where: { property: 'year', op: 'equal', value: 2023 } }) as { matches: number; successful: number };
    expect([dm.matches, dm.successful]).to.deep.equal([1, 1]);
    expect(await x('data.deleteById', { collection: 'Article', id })).to.equal(true);
    const dup = await failure(x('collections.create', { name: 'Article' }));
    expect([dup.code, dup.details.status, dup.details.retryable]).to.deep.equal(['DRIVER_ERROR', 422, false]);
    expect(dup.message).to.contain('class name Article already exists');
    expect(await x('collections.delete', { name: 'Article' })).to.equal(null);
    await d.destroy(c);
  });

  it('health check: no timer of its own; the pool validates at health_check_interval, a failing probe is counted and logged, a proven connection skipped', async () => {
    const d = driver({ health_check_interval: '100ms' });
    expect(d.validateIntervalMs).to.equal(100);
    expect(driver({ health_check_interval: 0 }).validateIntervalMs).to.equal(undefined);
    const c = await d.create({ resourceId: 'r1', signal: ac.signal });
    expect(await d.validate(c)).to.equal(true);
    s.setFaults({ notReady: true });
    // Within the interval the connection counts as proven: no probe.
    expect(await d.validate(c)).to.equal(true);
    await new Promise((r) => setTimeout(r, 150));
    expect(await d.validate(c)).to.equal(false);
    const st = d.stats(pool);
    expect(st.stats.health_check_failures).to.equal(1);
    expect(logs).to.include('Dead connection detected');
    expect(d.backend!()).to.deep.include({ healthy: false });
    s.clearFaults();
    await new Promise((r) => setTimeout(r, 150));
    expect(await d.validate(c)).to.equal(true);
    expect(d.backend!()).to.deep.equal({ healthy: true });
    expect(await d.exec(c, 'collections.listAll', {}, ctx)).to.be.an('array');
    await d.destroy(c);
  });

  it('Weaviate down: fails fast with WEAVIATE_UNAVAILABLE, reset refuses the broken connection; heals when it is back', async () => {
    const d = driver({ health_check_interval: 0 });
    const c = await d.create({ resourceId: 'r1', signal: ac.signal });
    await d.exec(c, 'collections.create', { name: 'Down' }, ctx);
    await s.down();
    // weaviate-client prints each gRPC retry ("Attempt 0 failed. Retrying in ...") with console.warn.
    const warn = console.warn;
    console.warn = () => {};
    try {
      const errs: ShoalError[] = [];
      for (let i = 0; i < 4; i++) {
        const t0 = Date.now();
        errs.push(await failure(d.exec(c, i % 2 ? 'query.fetchObjects' : 'data.exists', i % 2 ? { collection: 'Down' } : { collection: 'Down', id: '6f1e4c8e-1d7a-4b8e-9a53-2b6a1c3d4e5f' }, ctx)));
        // Fails fast rather than through weaviate-client's own retries; generous for a loaded machine.
        expect(Date.now() - t0, 'fails fast').to.be.below(5000);
      }
      for (const e of errs) expect(e.details?.retryable, e.message).to.equal(true);
      expect(errs.slice(1).every((e) => e.code === 'WEAVIATE_UNAVAILABLE')).to.equal(true);
      expect(await d.validate(c)).to.equal(false);
      const reset = await failure(d.reset(c));
      expect(reset.code).to.equal('WEAVIATE_UNAVAILABLE');
      const created = await failure(d.create({ resourceId: 'r2', signal: ac.signal }));
      expect([created.code, created.details.retryable]).to.deep.equal(['WEAVIATE_UNAVAILABLE', true]);
    } finally {
      console.warn = warn;
      await s.up();
    }
    expect(await d.exec(c, 'collections.exists', { name: 'Down' }, ctx)).to.equal(true);
    await d.destroy(c);
  });

  it('skip_init_checks + unreachable server: the create fails cleanly (the raw client leaves an unhandled rejection)', async () => {
    const dead = await freePort();
    // The trap, in a child process so that mocha does not take the rejection for ours.
    const canary = spawnSync(process.execPath, ['--input-type=module', '-e', `
      import weaviate from 'weaviate-client';
      let unhandled = 0;
      process.on('unhandledRejection', () => { unhandled++; });
      const c = await weaviate.connectToCustom({ httpHost: '127.0.0.1', httpPort: ${dead}, grpcHost: '127.0.0.1', grpcPort: ${dead}, skipInitChecks: true });
      c.collections.get('Article');
      await new Promise((r) => setTimeout(r, 300));
      console.log(JSON.stringify({ unhandled }));
    `], { cwd: ROOT, encoding: 'utf8', timeout: 15_000 });
    expect(JSON.parse(canary.stdout.trim()).unhandled, 'weaviate-client 3.12 still has the trap').to.equal(1);

    let unhandled = 0;
    const onUnhandled = () => { unhandled++; };
    process.prependListener('unhandledRejection', onUnhandled);
    try {
      const d = weaviateDriver({ clock: systemClock, random: Math.random, poolName: 'w', options: { host: '127.0.0.1', port: dead, grpc_port: dead, skip_init_checks: true } });
      const err = await failure(d.create({ resourceId: 'r1', signal: ac.signal }));
      expect([err.code, err.details.retryable]).to.deep.equal(['WEAVIATE_UNAVAILABLE', true]);
      // And against a live server it connects without the gRPC check, version cached.
      const ok = driver({ skip_init_checks: true });
      const c = await ok.create({ resourceId: 'r2', signal: ac.signal });
      expect(await ok.exec(c, 'collections.listAll', {}, ctx)).to.be.an('array');
      await ok.destroy(c);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      process.removeListener('unhandledRejection', onUnhandled);
    }
    expect(unhandled).to.equal(0);
  });

  it('use_pool false: placeholders cost nothing; each op connects a fresh client and closes it', async () => {
    const d = driver({ use_pool: false });
    const before = s.stats();
    const c: Conn = await d.create({ resourceId: 'r1', signal: ac.signal });
    expect(c.client).to.equal(undefined);
    expect(s.stats().http.requests).to.equal(before.http.requests); // no I/O to create
    for (let i = 0; i < 3; i++) expect(await d.exec(c, 'collections.listAll', {}, ctx)).to.be.an('array');
    const st = d.stats(pool).stats;
    expect(st).to.include({ enabled: false, total_connections_created: 3, total_connections_closed: 3, total_connections: 0 });
    // Each op paid the connect: GET /v1/meta twice and a gRPC health check, then the op.
    expect(s.stats().http.requests - before.http.requests).to.equal(3 * 3);
    expect(s.stats().grpc.requests - before.grpc.requests).to.equal(3);
    const bad = await failure(d.exec(c, 'nope', {}, ctx));
    expect(bad.code).to.equal('BAD_REQUEST');
    expect(d.stats(pool).stats.total_connections_created).to.equal(3); // refused before connecting
    await d.destroy(c);
  });
});
