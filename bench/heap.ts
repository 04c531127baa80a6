/**
 * Heap per idle resource: an in-process Pool with the synthetic driver, filled
 * with N idle resources; the heap after a full GC, minus the heap before
 * (pool constructed, empty), divided by N. Run with --expose-gc (bench/run.ts
 * starts this file as its own process with the flag).
 *
 * argv: [N=20000]. Prints one JSON object on stdout.
 */
import { Pool, syntheticDriver, systemClock, type PoolSettings } from '@shoal/pool-node';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) { process.stderr.write('heap.ts: run with node --expose-gc\n'); process.exit(2); }
const N = Number(process.argv[2] ?? 20_000);

async function settledHeap(): Promise<number> {
  // A few rounds so that weak callbacks and finalizers run between collections.
  for (let i = 0; i < 4; i++) {
    gc!();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

// The example config's session management (docs/configuration.md defaults); cleanup off so no timer fires mid-measure.
const settings: PoolSettings = {
  name: 'synthetic', minSize: N, maxSize: N, initialSize: N, maxWaitingClients: 1000, acquireTimeoutMs: 30_000, leaseTtlMs: 60_000, weight: 1,
  sessionManagement: { enableReuse: true, idleTimeoutMs: 300_000, maxLifetimeMs: 3_600_000, lifetimeJitter: 0.1, maxReuseCount: 100, contextReset: true, cleanupIntervalMs: 0, validateOnReturn: true, validateSkipWindowMs: 500, maxParked: 16, parkTtlMs: 600_000 },
  create: { timeoutMs: 10_000, retryBaseMs: 100, retryMaxMs: 10_000 },
  resourceLimits: { maxMemoryPerSessionBytes: 100 * 1024 * 1024, maxTotalMemoryBytes: 1024 * 1024 * 1024 },
};

const driver = syntheticDriver({ clock: systemClock, random: Math.random, options: { create_latency: 0, exec_latency: 0 }, poolName: 'synthetic' });
const pool = new Pool(settings, driver, systemClock);
const before = await settledHeap();
await pool.start();
const after = await settledHeap();
const n = pool.numbers();
if (n.idle !== N) { process.stderr.write(`heap.ts: expected ${N} idle resources, got ${JSON.stringify(n)}\n`); process.exit(1); }
process.stdout.write(JSON.stringify({ n: N, before, after, perResource: (after - before) / N }) + '\n');
await pool.close();
