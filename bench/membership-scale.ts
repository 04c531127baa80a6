/**
 * membership-scale (called by bench/run.ts, `--only=membership`): what a
 * balancer pays for the size of the cluster. One real pool-node and one
 * balancer process under a closed-loop acquire+release load, beside N
 * simulated pool-nodes heartbeating the real format from one helper process
 * (bench/procs/sim-nodes.ts: full in the benchmark's pool, idle in another).
 * One JSON line per N (10, 1,000, 5,000):
 *
 * - balancer_cpu_us_per_acquire: the balancer process's CPU (user + system)
 *   over the run divided by the acquires it placed; heartbeat handling
 *   (N per second) is part of it.
 * - acquire_p50_us: client-side p50 of the acquire (the release goes
 *   straight to the node); acquire_p50_ratio against the 10-node line of the
 *   same run.
 * - balancer_cpu_share: the balancer's CPU time over wall time (1 = one core).
 *
 * Goals (issue 11): at 5,000 nodes acquire_p50_ratio <= 1.1 and
 * balancer_cpu_us_per_acquire within 1.2x of the 10-node figure.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@shoal/client';
import { startNatsServer, type NatsServer } from '../test/helpers/nats-server.js';
import { closedLoop, type Cycle } from './lib/load.js';
import { onExitKill, spawnNode, type Child } from './lib/procs.js';
import { ratio, round } from './lib/stats.js';
import { performance } from 'node:perf_hooks';

const POOL = 'synthetic';
const GOALS = { p50Ratio: 1.1, cpuRatio: 1.2 };

export async function runMembershipScaleBench(o: { quick: boolean; log: (s: string) => void; tmp: string; sizes?: number[] }): Promise<Record<string, unknown>[]> {
  const sizes = o.sizes ?? [10, 1000, 5000];
  const runMs = o.quick ? 1500 : 5000;
  const concurrency = 16;
  let nats: NatsServer | undefined;
  const children: Child[] = [];
  const out: Record<string, unknown>[] = [];
  try {
    nats = await startNatsServer({ jetstream: true });
    const ns = nats;
    onExitKill(() => { if (ns.proc.exitCode === null) ns.proc.kill('SIGKILL'); });
    const config = join(o.tmp, 'membership-scale.yaml');
    writeFileSync(config, `node:\n  heartbeat_interval: 1s\npools:\n  ${POOL}:\n    driver: synthetic\n    min_size: 64\n    max_size: 64\n    initial_size: 64\n    options: { create_latency: 0, exec_latency: 0 }\n`);
    const env = { SHOAL_NATS_URL: nats.url, SHOAL_CONFIG: config, SHOAL_HTTP_PORT: '-1', SHOAL_LOG_LEVEL: 'warn' };
    const node = spawnNode('ms-node', 'services/pool-node/dist/main.js', { env: { ...env, SHOAL_LOG_LEVEL: 'info' } });
    children.push(node);
    await node.waitFor((l) => l.msg === 'listening');
    const balancer = spawnNode('ms-balancer', 'services/balancer/dist/main.js', { env: { ...env, SHOAL_LOG_LEVEL: 'info' } });
    children.push(balancer);
    await balancer.waitFor((l) => l.msg === 'listening');
    const client = await connect({ servers: [nats.url], name: 'bench-membership', autoRenew: false, timeoutMs: 10_000 });
    try {
      const cycle: Cycle = async () => {
        const t0 = performance.now();
        const lease = await client.acquire(POOL, { timeoutMs: 10_000 });
        const ms = performance.now() - t0;
        await lease.release();
        return ms;
      };
      let base: { cpu: number; p50: number } | undefined;
      let sim: Child | undefined;
      for (const n of sizes) {
        if (sim) { await sim.stop(); sim = undefined; }
        sim = spawnNode(`ms-sim-${n}`, 'bench/procs/sim-nodes.ts', { nodeArgs: ['--import', 'tsx'], args: [nats.url, String(n), POOL] });
        children.push(sim);
        await sim.waitFor((l) => l.msg === 'listening');
        // Every simulated node heard at least once, and some load to warm up.
        await closedLoop(concurrency, o.quick ? 1500 : 2500, cycle);
        const r = await closedLoop(concurrency, runMs, cycle, { balancer: balancer.proc.pid });
        const cpuUs = r.cpu_us_per_op.balancer ?? NaN;
        const p50 = r.step_p50_us;
        base ??= { cpu: cpuUs, p50 };
        const line = {
          scenario: 'membership-scale', nodes: n, real_nodes: 1, concurrency,
          balancer_cpu_us_per_acquire: round(cpuUs), acquire_p50_us: round(p50),
          acquire_p50_ratio: round(ratio(p50, base.p50), 3), balancer_cpu_ratio: round(ratio(cpuUs, base.cpu), 3),
          balancer_cpu_share: round((cpuUs * r.ops) / (r.elapsedMs * 1000), 3),
          acquires_per_s: round(r.ops_per_s), errors: r.errors, ...(r.firstError ? { first_error: r.firstError } : {}),
          goals: n === Math.max(...sizes) ? { acquire_p50_ratio: GOALS.p50Ratio, balancer_cpu_ratio: GOALS.cpuRatio } : undefined,
        };
        o.log(`membership-scale ${n} nodes: ${line.balancer_cpu_us_per_acquire} µs balancer CPU per acquire, p50 ${line.acquire_p50_us} µs`);
        out.push(line);
      }
    } finally {
      await client.close();
    }
  } finally {
    await Promise.all(children.map((c) => c.stop('SIGTERM', 3000)));
    await nats?.stop();
  }
  return out;
}
