/**
 * Heap per idle Claude session, pool-node side (the CLI processes excluded):
 * an in-process Pool with the claude-cli driver and the stand-in CLI, filled
 * with N idle sessions (each had one turn and a /clear, as a reused session
 * has); the heap after a full GC, minus the heap before, divided by N.
 * Run with --expose-gc (bench/claude.ts starts it so).
 *
 * argv: <stand-in path> <work dir> [N=50]. Prints one JSON object on stdout.
 */
import { join } from 'node:path';
import { Pool, systemClock, type Driver, type PoolSettings } from '@shoal/pool-node';
import { claudeCliDriver, type ClaudeSession } from '../../services/pool-node/src/drivers/claude-cli/index.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) { process.stderr.write('claude-heap.ts: run with node --expose-gc\n'); process.exit(2); }
const [standIn, work, nArg] = process.argv.slice(2);
const N = Number(nArg ?? 50);

async function settledHeap(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc!();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

const settings: PoolSettings = {
  name: 'claude', minSize: 0, maxSize: N, initialSize: 0, maxWaitingClients: 1000, acquireTimeoutMs: 60_000, leaseTtlMs: 60_000, weight: 1,
  sessionManagement: { enableReuse: true, idleTimeoutMs: 3_600_000, maxLifetimeMs: 3_600_000, lifetimeJitter: 0.1, maxReuseCount: 100, contextReset: true, cleanupIntervalMs: 0, validateOnReturn: true, validateSkipWindowMs: 500, maxParked: 16, parkTtlMs: 600_000 },
  create: { timeoutMs: 60_000, retryBaseMs: 100, retryMaxMs: 10_000 },
  resourceLimits: { maxMemoryPerSessionBytes: 0, maxTotalMemoryBytes: 0 },
};

const driver = claudeCliDriver({
  clock: systemClock, random: Math.random, poolName: 'claude',
  options: { command: standIn!, cwd_root: join(work!, 'sessions'), include_partial_messages: true, rss_refresh: 0 },
}) as Driver<ClaudeSession>;
const pool = new Pool(settings, driver, systemClock);
const before = await settledHeap();
pool.scale('target', N);
while (pool.numbers().idle < N) await new Promise((r) => setTimeout(r, 20));
// One turn and a reset on each, so that the figure is that of a used, idle session.
const leases = await Promise.all(Array.from({ length: N }, () => pool.acquire({ timeoutMs: 30_000 })));
await Promise.all(leases.map((l) => pool.exec(l.leaseId, 'send', { content: 'hello' }, () => {})));
for (const l of leases) pool.release(l.leaseId, { reset: true });
while (pool.numbers().idle < N) await new Promise((r) => setTimeout(r, 20));
const after = await settledHeap();
process.stdout.write(JSON.stringify({ n: N, before, after, perSession: (after - before) / N }) + '\n');
await pool.close();
process.exit(0);
