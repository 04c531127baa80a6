/**
 * `npm run bench [-- --quick] [-- --only=heap,direct,balancer,replicas,reuse,claude,weaviate,autoscale,health,membership] [-- --profile=<dir>]`
 *
 * Shoal's benchmark, everything on loopback against one nats-server started
 * here. One JSON line per scenario or figure on stdout; progress on stderr.
 * Every subject is measured against a bare baseline in the same run, on the
 * same server, with the same connection options (`connectNats`), runs
 * alternating baseline/subject so that the noise of a shared 2-core machine
 * falls on both; medians over the runs. See docs/benchmarks.md.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect, type Client } from '@shoal/client';
import { encode, newId, PROTOCOL_VERSION, subjects } from '@shoal/protocol';
import { call, connectNats, type NatsConnection } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../test/helpers/nats-server.js';
import { closedLoop, type Cycle, type RunResult } from './lib/load.js';
import { onExitKill, onInterrupt, ROOT, spawnNode, stopAll, type Child } from './lib/procs.js';
import { runClaudeBench } from './claude.js';
import { runWeaviateBench } from './weaviate.js';
import { runAutoscaleBench } from './autoscale.js';
import { runHealthBench } from './health.js';
import { runMembershipScaleBench } from './membership-scale.js';
import { median, ratio, round } from './lib/stats.js';

// ---- options ---------------------------------------------------------------

const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const hit = argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  return hit === undefined ? undefined : hit.includes('=') ? hit.slice(hit.indexOf('=') + 1) : '';
};
const QUICK = flag('quick') !== undefined;
const ONLY = flag('only')?.split(',').filter(Boolean);
const PROFILE_DIR = flag('profile') ? resolve(flag('profile')!) : undefined;
const RELAY_MODE = flag('relay-mode') ?? 'request';
// For experiments only: run another build of the pool-node or balancer (e.g. a patched copy) in place of dist/main.js.
const NODE_SCRIPT = flag('node-script') || 'services/pool-node/dist/main.js';
const BALANCER_SCRIPT = flag('balancer-script') || 'services/balancer/dist/main.js';
const want = (s: string) => !ONLY || ONLY.includes(s);

const T = QUICK
  ? { runMs: 700, pairs: 2, warmMs: 250, firstWarmMs: 800, replicaPairs: 1, replicaRunMs: 700, reuseMs: 1500, heapN: 5_000 }
  : { runMs: 3000, pairs: 3, warmMs: 1000, firstWarmMs: 3000, replicaPairs: 3, replicaRunMs: 2000, reuseMs: 6000, heapN: 20_000 };
const CONCURRENCY = flag('concurrency')?.split(',').map(Number).filter((n) => n > 0) ?? [1, 16, 256];
const REPLICA_CONCURRENCY = 256;
const POOL = 'synthetic';
const STEADY = 'steady';
const TIMEOUT_MS = 10_000;
const HEARTBEAT_MS = 1000;

const GOALS = { directRatio: 0.9, balancerRatio: 0.85, acquireVsRelayP50: 1.25, heapBytes: 2048, reuseRate: 0.95 };

const t0 = performance.now();
const progress = (msg: string) => process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
const emit = (rec: Record<string, unknown>) => process.stdout.write(JSON.stringify(rec) + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- processes -------------------------------------------------------------

const tmp = mkdtempSync(join(tmpdir(), 'shoal-bench-'));
let nats: NatsServer | undefined;
const conns: { close(): Promise<void> }[] = [];

async function cleanup(): Promise<void> {
  for (const c of conns.splice(0)) await c.close().catch(() => {});
  await stopAll(3000);
  await nats?.stop().catch(() => {});
  rmSync(tmp, { recursive: true, force: true });
}
let interrupted = false;
onInterrupt(() => { interrupted = true; return cleanup(); });

function writeNodeConfig(file: string, pools: Record<string, number>): string {
  const path = join(tmp, file);
  const blocks = Object.entries(pools).map(([name, size]) =>
    `  ${name}:\n    driver: synthetic\n    min_size: ${size}\n    max_size: ${size}\n    initial_size: ${size}\n    options: { create_latency: 0, exec_latency: 0 }\n`);
  writeFileSync(path, `node:\n  heartbeat_interval: ${HEARTBEAT_MS}ms\n  drain_grace: 1s\npools:\n${blocks.join('')}`);
  return path;
}

const profileArgs = (what: string): string[] => {
  if (!PROFILE_DIR) return [];
  const dir = join(PROFILE_DIR, what);
  mkdirSync(dir, { recursive: true });
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
};

/** SHOAL_MICRO=0 runs the services without NATS micro registration (compare runs; docs/benchmarks.md). */
const MICRO_ENV: Record<string, string> = process.env.SHOAL_MICRO ? { SHOAL_MICRO: process.env.SHOAL_MICRO } : {};

async function startNode(config: string, name: string): Promise<Child & { nodeId: string }> {
  // log level info: the 'listening' line is an info line; nothing is logged per request at info.
  const c = spawnNode(name, NODE_SCRIPT, {
    env: { SHOAL_NATS_URL: nats!.url, SHOAL_CONFIG: config, SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info', ...MICRO_ENV },
    nodeArgs: profileArgs('pool-node'),
  });
  const line = await c.waitFor((l) => l.msg === 'listening');
  return Object.assign(c, { nodeId: String(line.nodeId) });
}

async function startBalancer(config: string, name: string): Promise<Child> {
  const c = spawnNode(name, BALANCER_SCRIPT, {
    env: { SHOAL_NATS_URL: nats!.url, SHOAL_CONFIG: config, SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info', ...MICRO_ENV },
    nodeArgs: profileArgs('balancer'),
  });
  const line = await c.waitFor((l) => l.msg === 'listening');
  // SHOAL_BENCH_WATCH=1: the status page's live feed is open on every balancer during the run.
  if (process.env.SHOAL_BENCH_WATCH === '1' && typeof line.httpPort === 'number') void watchFeed(line.httpPort);
  return c;
}

/** Read the balancer's server-sent events as a status page would, until the process ends. */
async function watchFeed(port: number): Promise<void> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/api/v1/session-pool/events`);
    const reader = r.body!.getReader();
    for (;;) if ((await reader.read()).done) return;
  } catch { /* the balancer stopped */ }
}

async function startBare(role: 'responder' | 'relay', name: string): Promise<Child> {
  const args = role === 'relay' ? [nats!.url, 'bench', RELAY_MODE] : [nats!.url, 'bench'];
  const c = spawnNode(name, `bench/procs/${role}.ts`, { nodeArgs: ['--import', 'tsx'], args });
  await c.waitFor((l) => l.msg === 'listening');
  return c;
}

// ---- measurement -----------------------------------------------------------

interface Compared {
  base: RunResult[];
  subj: RunResult[];
}

function check(label: string, r: RunResult): RunResult {
  if (r.errors > 0) progress(`  ${label}: ${r.errors} errors (first: ${r.firstError})`);
  return r;
}

type Pids = Record<string, number | undefined>;

/** Warm both up, then alternate baseline and subject runs (B,S,B,S,...); CPU per cycle of the `pids`. */
async function compare(label: string, c: number, base: Cycle, subj: Cycle, warmMs: number, basePids: Pids, subjPids: Pids): Promise<Compared> {
  progress(`${label} c=${c}: warm-up`);
  await closedLoop(c, warmMs, base);
  await closedLoop(c, warmMs, subj);
  const out: Compared = { base: [], subj: [] };
  for (let i = 0; i < T.pairs; i++) {
    const b = check(`${label} baseline`, await closedLoop(c, T.runMs, base, basePids));
    const s = check(`${label} subject`, await closedLoop(c, T.runMs, subj, subjPids));
    out.base.push(b);
    out.subj.push(s);
    progress(`${label} c=${c} pair ${i + 1}/${T.pairs}: baseline ${Math.round(b.ops_per_s)}/s p50 ${Math.round(b.p50_us)}us | subject ${Math.round(s.ops_per_s)}/s p50 ${Math.round(s.p50_us)}us`);
  }
  return out;
}

const med = (rs: RunResult[], k: keyof RunResult) => median(rs.map((r) => r[k] as number));
const errorsOf = (rs: RunResult[]) => rs.reduce((a, r) => a + r.errors, 0);
/** Median CPU µs per cycle of each process over the runs. */
const perOpOf = (rs: RunResult[], f: 'cpu_us_per_op' | 'writes_per_op') => Object.fromEntries(Object.keys(rs[0]?.[f] ?? {}).map((k) => [k, round(median(rs.map((r) => r[f][k]!)), f === 'cpu_us_per_op' ? 1 : 2)]));
/** Where the time goes: CPU µs and write syscalls per cycle of each process, subject and baseline. */
const usageOf = (r: Compared) => ({
  cpu_us_per_op: { subject: perOpOf(r.subj, 'cpu_us_per_op'), baseline: perOpOf(r.base, 'cpu_us_per_op') },
  writes_per_op: { subject: perOpOf(r.subj, 'writes_per_op'), baseline: perOpOf(r.base, 'writes_per_op') },
});

// ---- scenarios -------------------------------------------------------------

async function heapFigure(): Promise<void> {
  progress(`heap: in-process Pool, ${T.heapN} idle synthetic resources`);
  const c = spawnNode('heap', 'bench/heap.ts', { nodeArgs: ['--expose-gc', '--import', 'tsx'], args: [String(T.heapN)] });
  const line = await c.waitFor((l) => typeof l.perResource === 'number', 60_000);
  await c.exited;
  const value = round(line.perResource as number);
  emit({ figure: 'heap_bytes_per_idle_resource', value, goal: GOALS.heapBytes, met: value <= GOALS.heapBytes, n: line.n });
}

interface Env {
  node: Child & { nodeId: string };
  responder: Child;
  client: Client;
  bnc: NatsConnection;
  acquireBytes: Uint8Array;
  releaseBytes: Uint8Array;
}

async function directCycle(env: Env): Promise<void> {
  const { client, bnc, node } = env;
  const subj: Cycle = async () => {
    const lease = await client.acquire(POOL, { nodeId: node.nodeId, timeoutMs: TIMEOUT_MS });
    await lease.release();
  };
  const base: Cycle = async () => {
    await bnc.request('bench.acquire', env.acquireBytes, { timeout: TIMEOUT_MS });
    await bnc.request('bench.release', env.releaseBytes, { timeout: TIMEOUT_MS });
  };
  let first = true;
  for (const c of CONCURRENCY) {
    const r = await compare('direct-cycle', c, base, subj, first ? T.firstWarmMs : T.warmMs,
      { client: process.pid, responder: env.responder.proc.pid, nats: nats!.proc.pid },
      { client: process.pid, node: node.proc.pid, nats: nats!.proc.pid });
    first = false;
    const ops = med(r.subj, 'ops_per_s');
    const bops = med(r.base, 'ops_per_s');
    const q = ratio(ops, bops);
    emit({
      scenario: 'direct-cycle', concurrency: c,
      ops_per_s: round(ops), p50_us: round(med(r.subj, 'p50_us')), p99_us: round(med(r.subj, 'p99_us')),
      baseline_ops_per_s: round(bops), baseline_p50_us: round(med(r.base, 'p50_us')), baseline_p99_us: round(med(r.base, 'p99_us')),
      ratio: round(q, 3), goal: GOALS.directRatio, met: q >= GOALS.directRatio,
      pair_ratios: r.subj.map((s, i) => round(ratio(s.ops_per_s, r.base[i]!.ops_per_s), 3)),
      ...usageOf(r),
      runs: r.subj.length, run_ms: T.runMs, errors: errorsOf(r.subj) + errorsOf(r.base),
    });
  }
}

/** Acquire through the balancers, release straight to the node; returns the acquire's ms. */
function balancerCycle(client: Client, pool = POOL): Cycle {
  return async () => {
    const a0 = performance.now();
    const lease = await client.acquire(pool, { timeoutMs: TIMEOUT_MS });
    const a = performance.now() - a0;
    await lease.release();
    return a;
  };
}

/** One relayed request-reply (relay → responder → relay → caller) plus one direct one; returns the relayed one's ms. */
function relayCycle(env: Env): Cycle {
  return async () => {
    const a0 = performance.now();
    await env.bnc.request('bench.relay.acquire', env.acquireBytes, { timeout: TIMEOUT_MS });
    const a = performance.now() - a0;
    await env.bnc.request('bench.release', env.releaseBytes, { timeout: TIMEOUT_MS });
    return a;
  };
}

/** Wait until acquires through the balancers succeed (the balancer learns nodes from heartbeats). */
async function untilServed(client: Client, pool: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const l = await client.acquire(pool, { timeoutMs: 1000 });
      await l.release();
      return;
    } catch (err) {
      last = err;
      await sleep(100);
    }
  }
  throw new Error(`acquires on ${pool} through the balancer still fail after ${timeoutMs} ms: ${(last as Error)?.message}`);
}

async function balancerScenarios(env: Env, config: string): Promise<void> {
  const { client } = env;
  progress('balancer: starting one balancer and one bare relay');
  const relays = [await startBare('relay', 'relay-1')];
  const balancers = [await startBalancer(config, 'balancer-1')];
  await untilServed(client, POOL);
  const subj = balancerCycle(client);
  const base = relayCycle(env);

  if (want('balancer')) {
    for (const c of CONCURRENCY) {
      const r = await compare('balancer-cycle', c, base, subj, T.warmMs,
        { client: process.pid, relay: relays[0]!.proc.pid, responder: env.responder.proc.pid, nats: nats!.proc.pid },
        { client: process.pid, balancer: balancers[0]!.proc.pid, node: env.node.proc.pid, nats: nats!.proc.pid });
      const ops = med(r.subj, 'ops_per_s');
      const bops = med(r.base, 'ops_per_s');
      const q = ratio(ops, bops);
      const acq = med(r.subj, 'step_p50_us');
      const rel = med(r.base, 'step_p50_us');
      const rec: Record<string, unknown> = {
        scenario: 'balancer-cycle', concurrency: c,
        ops_per_s: round(ops), p50_us: round(med(r.subj, 'p50_us')), p99_us: round(med(r.subj, 'p99_us')),
        baseline_ops_per_s: round(bops), baseline_p50_us: round(med(r.base, 'p50_us')), baseline_p99_us: round(med(r.base, 'p99_us')),
        ratio: round(q, 3), goal: GOALS.balancerRatio, met: q >= GOALS.balancerRatio,
        acquire_p50_us: round(acq), relay_p50_us: round(rel), acquire_vs_relay_p50: round(ratio(acq, rel), 3),
        pair_ratios: r.subj.map((s, i) => round(ratio(s.ops_per_s, r.base[i]!.ops_per_s), 3)),
        ...usageOf(r),
        runs: r.subj.length, run_ms: T.runMs, relay_mode: RELAY_MODE, errors: errorsOf(r.subj) + errorsOf(r.base),
      };
      if (c === 16) Object.assign(rec, { acquire_vs_relay_goal: GOALS.acquireVsRelayP50, acquire_vs_relay_met: ratio(acq, rel) <= GOALS.acquireVsRelayP50 });
      emit(rec);
    }
  }

  if (want('replicas')) {
    // 1 replica vs 2, alternating; the second replica (and relay) is started and stopped between runs.
    const c = REPLICA_CONCURRENCY;
    const res = { b1: [] as RunResult[], b2: [] as RunResult[], r1: [] as RunResult[], r2: [] as RunResult[] };
    const pidsOf = (ps: Child[], role: string) => Object.fromEntries(ps.map((p, i) => [`${role}${i + 1}`, p.proc.pid]));
    const measure = async (n: 1 | 2) => {
      await closedLoop(c, T.warmMs, base);
      const r = check(`relays x${n}`, await closedLoop(c, T.replicaRunMs, base, { client: process.pid, ...pidsOf(relays, 'relay'), responder: env.responder.proc.pid, nats: nats!.proc.pid }));
      await closedLoop(c, T.warmMs, subj);
      const b = check(`balancers x${n}`, await closedLoop(c, T.replicaRunMs, subj, { client: process.pid, ...pidsOf(balancers, 'balancer'), node: env.node.proc.pid, nats: nats!.proc.pid }));
      (n === 1 ? res.r1 : res.r2).push(r);
      (n === 1 ? res.b1 : res.b2).push(b);
      progress(`balancer-replicas c=${c} x${n}: relays ${Math.round(r.ops_per_s)}/s | balancers ${Math.round(b.ops_per_s)}/s`);
    };
    for (let i = 0; i < T.replicaPairs; i++) {
      await measure(1);
      relays.push(await startBare('relay', 'relay-2'));
      // A balancer joins the queue group only after it has heard the nodes' heartbeats.
      balancers.push(await startBalancer(config, 'balancer-2'));
      await measure(2);
      await Promise.all([relays.pop()!.stop(), balancers.pop()!.stop()]);
    }
    const b1 = med(res.b1, 'ops_per_s'), b2 = med(res.b2, 'ops_per_s');
    const r1 = med(res.r1, 'ops_per_s'), r2 = med(res.r2, 'ops_per_s');
    // Each pair (x1 then x2, a few seconds apart) gives a ratio; the median of those is less exposed to drift.
    const pairRatios = (one: RunResult[], two: RunResult[]) => one.map((x, i) => round(ratio(two[i]!.ops_per_s, x.ops_per_s), 3));
    emit({
      scenario: 'balancer-replicas', concurrency: c,
      ops_per_s_1: round(b1), ops_per_s_2: round(b2), ratio: round(median(pairRatios(res.b1, res.b2)), 3), pair_ratios: pairRatios(res.b1, res.b2),
      relay_ops_per_s_1: round(r1), relay_ops_per_s_2: round(r2), relay_ratio: round(median(pairRatios(res.r1, res.r2)), 3), relay_pair_ratios: pairRatios(res.r1, res.r2),
      cpu_us_per_op: { balancers_1: perOpOf(res.b1, 'cpu_us_per_op'), balancers_2: perOpOf(res.b2, 'cpu_us_per_op'), relays_1: perOpOf(res.r1, 'cpu_us_per_op'), relays_2: perOpOf(res.r2, 'cpu_us_per_op') },
      runs: res.b1.length, run_ms: T.replicaRunMs, relay_mode: RELAY_MODE, errors: errorsOf([...res.b1, ...res.b2, ...res.r1, ...res.r2]),
    });
  }

  if (want('reuse')) await reuseRate(env, client, true);
  await Promise.all([...relays.splice(0), ...balancers.splice(0)].map((p) => p.stop()));
}

/**
 * Steady load on a pool sized for it (its own node, pool of 32, 16 clients
 * back to back): the node's reuseRate for that pool, and the share of leases
 * the clients saw marked `reused`.
 */
async function reuseRate(env: Env, client: Client, viaBalancer: boolean): Promise<void> {
  const c = 16;
  progress(`reuse_rate: steady load, ${c} clients on a pool of ${2 * c}, ${viaBalancer ? 'through the balancer' : 'direct to the node'}`);
  const node = await startNode(writeNodeConfig('steady.yaml', { [STEADY]: 2 * c }), 'pool-node-steady');
  let acquires = 0;
  let reused = 0;
  const cycle: Cycle = async () => {
    const lease = await client.acquire(STEADY, { timeoutMs: TIMEOUT_MS, nodeId: viaBalancer ? undefined : node.nodeId });
    acquires++;
    if (lease.reused) reused++;
    await lease.release();
  };
  if (viaBalancer) await untilServed(client, STEADY);
  const r = check('reuse', await closedLoop(c, T.reuseMs, cycle));
  const status = await call<{ pools: Record<string, { reuseRate: number; total: number }> }>(env.bnc, subjects().nodeStatus(node.nodeId), {}, 5000);
  const value = status.pools[STEADY]!.reuseRate;
  emit({
    figure: 'reuse_rate', value: round(value, 4), goal: GOALS.reuseRate, met: value >= GOALS.reuseRate,
    client_counted: round(ratio(reused, acquires), 4), acquires, pool_size: 2 * c, concurrency: c,
    via: viaBalancer ? 'balancer' : 'direct', ops_per_s: round(r.ops_per_s), errors: r.errors,
  });
  await node.stop();
}

// ---- main ------------------------------------------------------------------

async function main(): Promise<void> {
  progress(`${QUICK ? 'quick' : 'full'} run on ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), node ${process.version}${PROFILE_DIR ? `, profiles in ${PROFILE_DIR}` : ''}`);
  if (want('heap')) await heapFigure();

  // The drivers' benches start their own servers and stand-ins.
  if (want('claude')) for (const line of await runClaudeBench({ quick: QUICK, log: progress })) emit(line);
  if (want('weaviate')) for (const line of await runWeaviateBench({ quick: QUICK, log: progress })) emit(line);
  if (want('autoscale')) for (const line of await runAutoscaleBench({ quick: QUICK, log: progress })) emit(line);
  if (want('health')) for (const line of await runHealthBench({ quick: QUICK, log: progress })) emit(line);
  if (want('membership')) for (const line of await runMembershipScaleBench({ quick: QUICK, log: progress, tmp })) emit(line);

  const needNats = ['direct', 'balancer', 'replicas', 'reuse'].some(want);
  if (!needNats) return;
  nats = await startNatsServer();
  const ns = nats;
  onExitKill(() => { if (ns.proc.exitCode === null) ns.proc.kill('SIGKILL'); });
  progress(`nats-server on ${nats.url}`);

  const config = writeNodeConfig('node.yaml', { [POOL]: Math.max(...CONCURRENCY) + 44 });
  const [node, responder] = await Promise.all([startNode(config, 'pool-node'), startBare('responder', 'responder')]);
  const client = await connect({ servers: [nats.url], name: 'bench', autoRenew: false, timeoutMs: TIMEOUT_MS });
  conns.push(client);
  // The baseline's own connection, with exactly the options every Shoal process uses.
  const bnc = await connectNats({ servers: [nats.url], name: 'bench-baseline' });
  conns.push({ close: () => bnc.close() });
  const env: Env = {
    node, responder, client, bnc,
    // Same bytes as the client's acquire and release requests.
    acquireBytes: encode({ v: PROTOCOL_VERSION, pool: POOL, timeoutMs: TIMEOUT_MS - 100, priority: undefined, ttlMs: undefined, holder: { client: 'bench', host: 'localhost', pid: process.pid } }),
    releaseBytes: encode({ v: PROTOCOL_VERSION, leaseId: newId() }),
  };

  if (want('direct')) await directCycle(env);

  const balancerBuilt = existsSync(join(ROOT, 'services/balancer/dist/main.js'));
  if (['balancer', 'replicas', 'reuse'].some(want)) {
    if (balancerBuilt) {
      await balancerScenarios(env, config);
    } else {
      progress('services/balancer/dist/main.js not built: balancer scenarios skipped; reuse_rate measured direct to the node');
      for (const s of ['balancer-cycle', 'balancer-replicas'].filter((x) => want(x === 'balancer-cycle' ? 'balancer' : 'replicas'))) {
        emit({ scenario: s, skipped: 'services/balancer/dist/main.js is not built' });
      }
      if (want('reuse')) await reuseRate(env, client, false);
    }
  }
}

main().then(
  async () => { await cleanup(); progress('done'); process.exit(0); },
  async (err) => {
    if (interrupted) return; // the interrupt handler cleans up and exits
    progress(`failed: ${err instanceof Error ? err.stack : String(err)}`);
    await cleanup();
    process.exit(1);
  },
);
