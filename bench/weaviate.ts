/**
 * `weaviate-query`: a Weaviate query through Shoal (one-shot exec on a
 * pool-node's `weaviate` pool) against the same query with weaviate-client
 * called directly in this process — same run, same stand-in (in-process,
 * test/stand-ins/weaviate), at concurrency 1, 16, 64, runs alternating
 * direct/Shoal so that machine noise falls on both. Queries: `fetchObjects`
 * (limit 5) and `nearVector` (limit 5, 32 dimensions, 1000 objects).
 *
 * Lines: {scenario:'weaviate-query', query, concurrency, ops_per_s, p50_us,
 * p99_us, direct_ops_per_s, direct_p50_us, direct_p99_us, ratio,
 * added_p50_us, goal/met (added p50 <= 1.5 ms at c=1)} and the figures
 * `new_tcp_per_1000_queries` (TCP connects the stand-in accepted during the
 * measured Shoal runs, per 1000 queries; goal 0) and, for contrast,
 * `new_tcp_per_1000_queries_use_pool_false` (a pool with
 * VECTOR_STORE_USE_POOL=false: a fresh client per query).
 *
 * run.ts (owned elsewhere) calls runWeaviateBench; alone:
 *   node --import tsx bench/weaviate.ts [--quick]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import weaviate, { type WeaviateClient } from 'weaviate-client';
import { connect, type Client } from '@shoal/client';
import { startNatsServer, type NatsServer } from '../test/helpers/nats-server.js';
import { startWeaviateStandIn, type WeaviateStandIn } from '../test/stand-ins/weaviate/server.js';
import { closedLoop, type Cycle, type RunResult } from './lib/load.js';
import { spawnNode, type Child } from './lib/procs.js';
import { median, ratio, round } from './lib/stats.js';

const COLLECTION = 'BenchDoc';
const OBJECTS = 1000;
const DIMS = 32;
const POOL = 'weaviate';
const LEGACY_POOL = 'weaviate_legacy';
const POOL_SIZE = 16;
const CONCURRENCY = [1, 16, 64];
const GOAL_ADDED_P50_US = 1500;
const TIMEOUT_MS = 10_000;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function runWeaviateBench(opts: { quick: boolean; log: (s: string) => void }): Promise<Record<string, unknown>[]> {
  const T = opts.quick ? { runMs: 600, warmMs: 250, pairs: 1, legacyMs: 600 } : { runMs: 3000, warmMs: 1000, pairs: 3, legacyMs: 3000 };
  const out: Record<string, unknown>[] = [];
  const log = opts.log;
  const tmp = mkdtempSync(join(tmpdir(), 'shoal-bench-weaviate-'));
  let nats: NatsServer | undefined;
  let standIn: WeaviateStandIn | undefined;
  let node: Child | undefined;
  let legacyNode: Child | undefined;
  let shoal: Client | undefined;
  let direct: WeaviateClient | undefined;
  try {
    standIn = await startWeaviateStandIn();
    nats = await startNatsServer({ jetstream: false });
    log(`weaviate: stand-in on http ${standIn.httpPort} / grpc ${standIn.grpcPort}; loading ${OBJECTS} objects of ${DIMS} dims`);

    direct = await weaviate.connectToCustom({ httpHost: '127.0.0.1', httpPort: standIn.httpPort, grpcHost: '127.0.0.1', grpcPort: standIn.grpcPort });
    await direct.collections.create({ name: COLLECTION, properties: [{ name: 'title', dataType: 'text' }, { name: 'n', dataType: 'int' }], vectorizers: weaviate.configure.vectors.selfProvided() });
    const col = direct.collections.get(COLLECTION);
    const r = rng(7);
    const vec = () => Array.from({ length: DIMS }, () => r() * 2 - 1);
    const objs = Array.from({ length: OBJECTS }, (_, i) => ({ properties: { title: `document ${i} about topic ${i % 17}`, n: i }, vectors: vec() }));
    const res = await col.data.insertMany(objs);
    if (res.hasErrors) throw new Error(`loading the stand-in failed: ${JSON.stringify(Object.values(res.errors)[0])}`);
    const queries = Array.from({ length: 64 }, vec);

    const cfg = join(tmp, 'node.yaml');
    const pool = (name: string, usePool: boolean, size: number) => [
      `  ${name}:`, '    driver: weaviate', `    min_size: ${size}`, `    max_size: ${size}`, `    initial_size: ${size}`,
      '    acquire_timeout: 10s', '    session_management: { context_reset: false, max_reuse_count: 0 }',
      `    options: { host: 127.0.0.1, port: ${standIn!.httpPort}, grpc_port: ${standIn!.grpcPort}, use_pool: ${usePool} }`,
    ].join('\n');
    const legacyCfg = join(tmp, 'legacy.yaml');
    const head = 'node:\n  heartbeat_interval: 1s\n  drain_grace: 1s\npools:\n';
    writeFileSync(cfg, `${head}${pool(POOL, true, POOL_SIZE)}\n`);
    // The legacy pool on a node of its own: in one process its fresh clients would share the pooled clients' gRPC connection.
    writeFileSync(legacyCfg, `${head}${pool(LEGACY_POOL, false, POOL_SIZE)}\n`);
    // Info level: 'listening' is an info line; nothing is logged per request at info.
    const start = (name: string, file: string) => spawnNode(name, 'services/pool-node/dist/main.js', { env: { SHOAL_NATS_URL: nats!.url, SHOAL_CONFIG: file, SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info' } });
    node = start('pool-node-weaviate', cfg);
    legacyNode = start('pool-node-weaviate-legacy', legacyCfg);
    const [nodeId, legacyId] = await Promise.all([node, legacyNode].map(async (n) => String((await n.waitFor((l) => l.msg === 'listening', 30_000)).nodeId)));
    shoal = await connect({ servers: [nats.url], name: 'bench-weaviate' });
    log(`weaviate: pool-node ${nodeId} with ${POOL} (${POOL_SIZE} connections); ${legacyId} with ${LEGACY_POOL} (use_pool false)`);

    let qi = 0;
    const nextVector = () => queries[qi++ % queries.length]!;
    const s = shoal;
    const kinds: { query: string; direct: Cycle; shoal: Cycle }[] = [
      {
        query: 'fetchObjects',
        direct: async () => { await col.query.fetchObjects({ limit: 5 }); },
        shoal: async () => { await s.exec(POOL, 'query.fetchObjects', { collection: COLLECTION, limit: 5 }, { nodeId, timeoutMs: TIMEOUT_MS }); },
      },
      {
        query: 'nearVector',
        direct: async () => { await col.query.nearVector(nextVector(), { limit: 5 }); },
        shoal: async () => { await s.exec(POOL, 'query.nearVector', { collection: COLLECTION, vector: nextVector(), limit: 5 }, { nodeId, timeoutMs: TIMEOUT_MS }); },
      },
    ];

    let shoalQueries = 0;
    let shoalConnects = 0;
    const connects = () => standIn!.stats().http.connects + standIn!.stats().grpc.connects;
    for (const k of kinds) {
      for (const c of CONCURRENCY) {
        await closedLoop(c, T.warmMs, k.direct);
        await closedLoop(c, T.warmMs, k.shoal);
        const d: RunResult[] = [];
        const sh: RunResult[] = [];
        for (let i = 0; i < T.pairs; i++) {
          d.push(await closedLoop(c, T.runMs, k.direct));
          const before = connects();
          const run = await closedLoop(c, T.runMs, k.shoal);
          shoalConnects += connects() - before;
          shoalQueries += run.ops;
          sh.push(run);
          log(`weaviate-query ${k.query} c=${c} pair ${i + 1}/${T.pairs}: direct ${Math.round(d.at(-1)!.ops_per_s)}/s p50 ${Math.round(d.at(-1)!.p50_us)}us | shoal ${Math.round(run.ops_per_s)}/s p50 ${Math.round(run.p50_us)}us`);
        }
        const med = (rs: RunResult[], f: 'ops_per_s' | 'p50_us' | 'p99_us') => median(rs.map((x) => x[f]));
        const added = med(sh, 'p50_us') - med(d, 'p50_us');
        const errors = [...d, ...sh].reduce((a, x) => a + x.errors, 0);
        out.push({
          scenario: 'weaviate-query', query: k.query, concurrency: c, path: 'one-shot, direct to the node',
          ops_per_s: round(med(sh, 'ops_per_s')), p50_us: round(med(sh, 'p50_us')), p99_us: round(med(sh, 'p99_us')),
          direct_ops_per_s: round(med(d, 'ops_per_s')), direct_p50_us: round(med(d, 'p50_us')), direct_p99_us: round(med(d, 'p99_us')),
          ratio: round(ratio(med(sh, 'ops_per_s'), med(d, 'ops_per_s')), 3), added_p50_us: round(added),
          ...(c === 1 ? { goal_added_p50_us: GOAL_ADDED_P50_US, met: added <= GOAL_ADDED_P50_US } : {}),
          pool_size: POOL_SIZE, runs: sh.length, run_ms: T.runMs, errors,
          ...(errors > 0 ? { first_error: [...d, ...sh].find((x) => x.firstError)?.firstError } : {}),
        });
      }
    }
    const perK = shoalQueries > 0 ? (shoalConnects / shoalQueries) * 1000 : NaN;
    out.push({ figure: 'new_tcp_per_1000_queries', value: round(perK, 3), goal: 0, met: shoalConnects === 0, queries: shoalQueries, tcp_connects: shoalConnects, pool_size: POOL_SIZE });

    // Contrast: the design's legacy mode, a fresh client per query.
    await closedLoop(16, T.warmMs, async () => { await s.exec(LEGACY_POOL, 'query.fetchObjects', { collection: COLLECTION, limit: 5 }, { nodeId: legacyId, timeoutMs: TIMEOUT_MS }); });
    const before = connects();
    const legacy = await closedLoop(16, T.legacyMs, async () => { await s.exec(LEGACY_POOL, 'query.fetchObjects', { collection: COLLECTION, limit: 5 }, { nodeId: legacyId, timeoutMs: TIMEOUT_MS }); });
    const legacyConnects = connects() - before;
    out.push({
      figure: 'new_tcp_per_1000_queries_use_pool_false', value: round((legacyConnects / Math.max(1, legacy.ops)) * 1000, 1), queries: legacy.ops, tcp_connects: legacyConnects,
      ops_per_s: round(legacy.ops_per_s), p50_us: round(legacy.p50_us), concurrency: 16, errors: legacy.errors,
    });
    log(`weaviate: legacy (use_pool false) c=16 ${Math.round(legacy.ops_per_s)}/s p50 ${Math.round(legacy.p50_us)}us, ${legacyConnects} TCP connects for ${legacy.ops} queries`);
    return out;
  } finally {
    await shoal?.close().catch(() => {});
    await Promise.all([node, legacyNode].map((n) => n?.stop('SIGTERM', 3000).catch(() => {})));
    await direct?.close().catch(() => {});
    await standIn?.close().catch(() => {});
    await nats?.stop().catch(() => {});
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  const t0 = performance.now();
  runWeaviateBench({ quick, log: (s) => process.stderr.write(`[weaviate ${((performance.now() - t0) / 1000).toFixed(1)}s] ${s}\n`) }).then(
    (lines) => { for (const l of lines) process.stdout.write(`${JSON.stringify(l)}\n`); process.exit(0); },
    (err) => { process.stderr.write(`bench/weaviate: ${(err as Error).stack}\n`); process.exit(1); },
  );
}
