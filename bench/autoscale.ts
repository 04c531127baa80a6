/**
 * `autoscale-trace`: replay load traces against two synthetic pools with a
 * realistic create latency (2 s), on 2 pool-nodes, a balancer and the
 * autoscaler, all real processes on one nats-server. The pools are the same
 * but for `auto_scaling.predictive` (on for `pred`, off for `react`), and
 * get the same trace at the same time, so the prediction's gain is measured
 * in the same run on the same machine.
 *
 * Traces (demand = resources in use; arrivals at rate demand / hold, each
 * holding its lease `HOLD_MS`): `step` 2 → 16 → 2 (1× → 8× → 1×), `ramp`
 * 1 → 24 linearly.
 *
 * One line per trace and scaler: {scenario:'autoscale-trace', trace, scaler:
 * predictive|reactive, warm_acquire_ratio (acquires that waited less than
 * half a create latency, i.e. did not wait for a create), p99_wait_ms,
 * resource_seconds_ratio (∫ (total + creating) dt over the trace ÷ ∫ demand
 * dt of the trace), reversals (changes of scaling direction), acquires,
 * decisions, goals and met}.
 *
 * run.ts calls runAutoscaleBench; alone: node --import tsx bench/autoscale.ts [--quick]
 * (BENCH_DEBUG=1 prints every scaling decision with its numbers).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { connect, type Client } from '@shoal/client';
import { parseHeartbeat, subjects } from '@shoal/protocol';
import { call, connectNats, type NatsConnection } from '@shoal/runtime';
import { startNatsServer, type NatsServer } from '../test/helpers/nats-server.js';
import { spawnNode, type Child } from './lib/procs.js';
import { round } from './lib/stats.js';

const CREATE_MS = 2000;
const HOLD_MS = 1000;
const TICK_MS = 500;
const POOLS = { pred: true, react: false } as const;
type PoolName = keyof typeof POOLS;
/** The ramp's end: steep enough (with the quick run's 10 s, ~2.5 resources a second) that a reactive scaler falls behind. */
const RAMP_TO = 24;
const GOALS = { rampWarm: 0.95, resourceSecondsRatio: 1.5, reversals: 2 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Demand (resources in use) at `t` of a trace lasting `T` ms. */
const TRACES: Record<string, (t: number, T: number) => number> = {
  step: (t, T) => (t < T / 4 || t >= (3 * T) / 4 ? 2 : 16),
  ramp: (t, T) => 1 + (RAMP_TO - 1) * t / T,
};

function configYaml(): string {
  const pool = (predictive: boolean) => [
    '    driver: synthetic',
    '    min_size: 1',
    '    max_size: 20',
    '    initial_size: 1',
    `    options: { create_latency: ${CREATE_MS}, exec_latency: 0 }`,
    '    session_management: { idle_timeout: 3s, cleanup_interval: 1s }',
    `    auto_scaling: { enabled: true, scale_up_threshold: 0.8, scale_down_threshold: 0.3, scale_up_increment: 2, scale_down_increment: 1, cooldown_period: 2s, stabilization_window: 5s, scale_down_to_fit: true, predictive: ${predictive} }`,
  ].join('\n');
  return [
    'node:',
    `  heartbeat_interval: ${TICK_MS}ms`,
    '  drain_grace: 1s',
    '  log_level: info',
    'autoscaler:',
    '  lease_ttl: 2s',
    `  interval: ${TICK_MS}ms`,
    'pools:',
    ...Object.entries(POOLS).map(([name, p]) => `  ${name}:\n${pool(p)}`),
    '',
  ].join('\n');
}

interface PoolRun { waits: number[]; acquires: number; failed: number }

/** Arrivals for one pool: each acquires through the balancer, holds HOLD_MS, releases. */
async function drive(client: Client, pool: PoolName, demand: (t: number) => number, T: number, run: PoolRun): Promise<void> {
  const t0 = performance.now();
  const inflight = new Set<Promise<void>>();
  let acc = 0;
  let last = t0;
  for (;;) {
    const now = performance.now();
    const t = now - t0;
    if (t >= T) break;
    acc += (demand(t) / HOLD_MS) * (now - last);
    last = now;
    while (acc >= 1) {
      acc -= 1;
      const p = (async () => {
        const a = performance.now();
        try {
          const lease = await client.acquire(pool, { timeoutMs: 30_000, ttlMs: 60_000 });
          run.waits.push(performance.now() - a);
          run.acquires++;
          await sleep(HOLD_MS);
          await lease.release().catch(() => {});
        } catch {
          run.failed++;
        }
      })();
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    }
    await sleep(20);
  }
  await Promise.all(inflight);
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

export async function runAutoscaleBench(opts: { quick: boolean; log: (s: string) => void }): Promise<Record<string, unknown>[]> {
  const T = opts.quick ? 8_000 : 40_000;
  const log = opts.log;
  const out: Record<string, unknown>[] = [];
  const tmp = mkdtempSync(join(tmpdir(), 'shoal-bench-autoscale-'));
  let nats: NatsServer | undefined;
  const kids: Child[] = [];
  let client: Client | undefined;
  let nc: NatsConnection | undefined;
  try {
    nats = await startNatsServer();
    const cfg = join(tmp, 'autoscale.yaml');
    writeFileSync(cfg, configYaml());
    const env = (extra: Record<string, string>) => ({ SHOAL_NATS_URL: nats!.url, SHOAL_CONFIG: cfg, SHOAL_HTTP_PORT: '-1', ...extra });
    for (const id of ['n1', 'n2']) kids.push(spawnNode(id, 'services/pool-node/dist/main.js', { env: env({ SHOAL_NODE_ID: id }) }));
    kids.push(spawnNode('balancer', 'services/balancer/dist/main.js', { env: env({ SHOAL_BALANCER_ID: 'b1' }) }));
    const autoscaler = spawnNode('autoscaler', 'services/autoscaler/dist/main.js', { env: env({ SHOAL_AUTOSCALER_ID: 'a1' }) });
    kids.push(autoscaler);
    await Promise.all(kids.map((k) => k.waitFor((l) => l.msg === 'listening', 30_000)));
    await autoscaler.waitFor((l) => l.msg === 'elected leader', 30_000);
    client = await connect({ servers: [nats.url], name: 'bench-autoscale', autoRenew: false });
    nc = await connectNats({ servers: [nats.url], name: 'bench-autoscale-watch' });
    const s = subjects();
    // (total + creating) per node and pool, from the heartbeats.
    const sizes = new Map<string, { size: number; target: number; demand: number }>();
    nc.subscribe(s.anyHeartbeat, { callback: (_e, m) => {
      try { const hb = parseHeartbeat(m.data); for (const [p, st] of Object.entries(hb.pools)) sizes.set(`${hb.nodeId}\0${p}`, { size: st.total + st.creating, target: st.target, demand: st.active + st.waiting }); } catch { /* ignore */ }
    } });
    const sumOf = (pool: string, f: (x: { size: number; target: number; demand: number }) => number) => [...sizes].filter(([k]) => k.endsWith(`\0${pool}`)).reduce((a, [, v]) => a + f(v), 0);
    const poolSize = (pool: string) => sumOf(pool, (x) => x.size);
    await sleep(3 * TICK_MS);

    // --quick: the ramp only (the trace the goals are about), to keep the quick run short.
    for (const [trace, demandOf] of Object.entries(TRACES).filter(([name]) => !opts.quick || name === 'ramp')) {
      // Back to the floor between traces: both pools at their min, surplus gone.
      for (const pool of Object.keys(POOLS)) await call(nc, s.adminScale(pool), { pool, op: 'target', n: 2 }, 5000).catch(() => {});
      const settle = Date.now() + 15_000;
      while (Date.now() < settle && Object.keys(POOLS).some((p) => poolSize(p) > 2)) await sleep(200);
      // Let the admin step's cooldown pass.
      await sleep(2500);
      log(`autoscale-trace: ${trace} (${T / 1000} s, demand ${demandOf(0, T).toFixed(0)} → ${demandOf(T / 2, T).toFixed(0)} → ${demandOf(T - 1, T).toFixed(0)}, create ${CREATE_MS} ms)`);
      const decisionsBefore = autoscaler.logs.length;
      const rs: Record<string, number> = { pred: 0, react: 0 };
      let sampling = true;
      const sampler = (async () => {
        const start = performance.now();
        let last = start;
        let nextLine = start;
        while (sampling) {
          await sleep(100);
          const now = performance.now();
          for (const p of Object.keys(POOLS)) rs[p]! += (poolSize(p) * (now - last)) / 1000;
          last = now;
          // BENCH_DEBUG: a timeline, once a second, of what each pool had against what the trace asked (in use / target / total + creating).
          if (process.env.BENCH_DEBUG && now >= nextLine) {
            nextLine += 1000;
            log(`    t=${((now - start) / 1000).toFixed(0).padStart(2)} trace=${demandOf(now - start, T).toFixed(1).padStart(4)} ` + Object.keys(POOLS).map((p) => `${p} ${sumOf(p, (x) => x.demand)}/${sumOf(p, (x) => x.target)}/${poolSize(p)}`).join('  '));
          }
        }
      })();
      const runs: Record<PoolName, PoolRun> = { pred: { waits: [], acquires: 0, failed: 0 }, react: { waits: [], acquires: 0, failed: 0 } };
      await Promise.all((Object.keys(POOLS) as PoolName[]).map((p) => drive(client!, p, (t) => demandOf(t, T), T, runs[p])));
      sampling = false;
      await sampler;
      // ∫ demand dt of the trace, in resource-seconds.
      let need = 0;
      for (let t = 0; t < T; t += 10) need += (demandOf(t, T) * 10) / 1000;
      for (const p of Object.keys(POOLS) as PoolName[]) {
        const r = runs[p];
        const dirs = autoscaler.logs.slice(decisionsBefore).filter((l) => l.msg === 'scaling decision' && l.pool === p).map((l) => String(l.direction));
        let reversals = 0;
        for (let i = 1; i < dirs.length; i++) if (dirs[i] !== dirs[i - 1]) reversals++;
        const warm = r.waits.filter((w) => w < CREATE_MS / 2).length / Math.max(1, r.waits.length);
        const ratio = rs[p]! / need;
        const line: Record<string, unknown> = {
          scenario: 'autoscale-trace', trace, scaler: POOLS[p] ? 'predictive' : 'reactive',
          warm_acquire_ratio: round(warm, 3), p99_wait_ms: round(pct(r.waits, 99)), p50_wait_ms: round(pct(r.waits, 50)),
          resource_seconds_ratio: round(ratio, 2), reversals, acquires: r.acquires, failed: r.failed, decisions: dirs.length,
          create_latency_ms: CREATE_MS, hold_ms: HOLD_MS, trace_s: T / 1000,
        };
        if (POOLS[p]) {
          const goals: Record<string, unknown> = { resource_seconds_ratio: `<= ${GOALS.resourceSecondsRatio}`, reversals: `<= ${GOALS.reversals}` };
          let met = ratio <= GOALS.resourceSecondsRatio && reversals <= GOALS.reversals;
          if (trace === 'ramp') { goals.warm_acquire_ratio = `>= ${GOALS.rampWarm}`; met = met && warm >= GOALS.rampWarm; }
          line.goal = goals;
          line.met = met;
        }
        out.push(line);
        if (process.env.BENCH_DEBUG) for (const l of autoscaler.logs.slice(decisionsBefore).filter((x) => x.msg === 'scaling decision' && x.pool === p)) log(`    ${String(l.ts).slice(17, 23)} ${l.direction} ${l.from}→${l.to} ${l.reason} demand=${l.demand} waiting=${l.waiting} total=${l.total} creating=${l.creating} util=${l.utilization} f=${l.forecast ?? '-'} uncovered=${l.uncovered ?? '-'}`);
        log(`  ${p}: warm ${line.warm_acquire_ratio}, p99 wait ${line.p99_wait_ms} ms, resource-seconds ×${line.resource_seconds_ratio}, reversals ${reversals}`);
      }
    }
  } finally {
    await client?.close().catch(() => {});
    await nc?.close().catch(() => {});
    await Promise.all(kids.map((k) => k.stop('SIGTERM', 3000)));
    await nats?.stop().catch(() => {});
    rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  runAutoscaleBench({ quick, log: (m) => process.stderr.write(m + '\n') }).then(
    (lines) => { for (const l of lines) process.stdout.write(JSON.stringify(l) + '\n'); process.exit(0); },
    (err) => { process.stderr.write(`autoscale bench failed: ${err instanceof Error ? err.stack : String(err)}\n`); process.exit(1); },
  );
}
