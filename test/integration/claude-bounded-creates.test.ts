import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool, systemClock, type Driver, type PoolSettings } from '@shoal/pool-node';
import { claudeCliDriver, type ClaudeSession } from '../../services/pool-node/src/drivers/claude-cli/index.js';
import { ROOT, sleep } from '../helpers/procs.js';

const STAND_IN = join(ROOT, 'test', 'stand-ins', 'claude', 'claude.mjs');

/**
 * The most [start, ready] intervals (one per stand-in session process, from its
 * marker file) open at one instant. The driver's `claude auth status` check is
 * a process too, but not a session start: counted apart.
 */
function peakStarting(dir: string): { peak: number; processes: number; subcommands: number } {
  const events: [number, number][] = [];
  let processes = 0;
  let subcommands = 0;
  for (const f of readdirSync(dir)) {
    const lines = readFileSync(join(dir, f), 'utf8').trim().split('\n').map((l) => l.split(' '));
    const startLine = lines.find(([w]) => w === 'start');
    if (startLine?.[2] === 'auth') { subcommands++; continue; }
    processes++;
    const start = Number(startLine?.[1]);
    const ready = Number(lines.find(([w]) => w === 'ready')?.[1] ?? Infinity);
    events.push([start, +1], [ready, -1]);
  }
  // At equal times, a ready comes before a start: the next create begins only after one is ready.
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let peak = 0;
  for (const [, d] of events) peak = Math.max(peak, (open += d));
  return { peak, processes, subcommands };
}

describe('claude-cli pool: creates bounded by max_concurrent_creates (stand-in CLI processes)', function () {
  this.timeout(120_000);
  let home: string;
  let marks: string;
  let pool: Pool | undefined;

  beforeEach(() => {
    home = mkdtempSync(join(tmpdir(), 'claude-bounded-'));
    marks = join(home, 'marks');
    mkdirSync(marks);
  });
  afterEach(async () => {
    await pool?.close();
    pool = undefined;
    rmSync(home, { recursive: true, force: true });
  });

  function claudePool(maxConcurrentCreates: number | undefined): Pool {
    const driver = claudeCliDriver({
      clock: systemClock, random: Math.random, poolName: 'claude', labels: { pool: 'claude', node: 't' },
      // A slow boot, so that processes started together overlap for sure.
      options: { command: STAND_IN, cwd_root: join(home, 'work'), env: { STANDIN_MARK_DIR: marks, STANDIN_START_DELAY_MS: '150' }, stop_grace: '300ms', stop_kill_after: '700ms' },
    }) as Driver<ClaudeSession>;
    const s: PoolSettings = {
      name: 'claude', minSize: 0, maxSize: 50, initialSize: 0, maxWaitingClients: 100, acquireTimeoutMs: 1000, leaseTtlMs: 60_000, weight: 1,
      sessionManagement: { enableReuse: true, idleTimeoutMs: 0, maxLifetimeMs: 0, lifetimeJitter: 0, maxReuseCount: 0, contextReset: false, cleanupIntervalMs: 0, validateOnReturn: false, validateSkipWindowMs: 0, maxParked: 0, parkTtlMs: 0 },
      create: { timeoutMs: 60_000, retryBaseMs: 100, retryMaxMs: 1000 },
      resourceLimits: { maxMemoryPerSessionBytes: 0, maxTotalMemoryBytes: 0 },
      ...(maxConcurrentCreates !== undefined ? { maxConcurrentCreates } : {}),
    };
    return new Pool(s, driver, systemClock);
  }

  it('scaled to 50, never has more than max_concurrent_creates (the claude-cli default, 4) processes starting at once', async () => {
    pool = claudePool(undefined);
    expect(pool.maxConcurrentCreates).to.equal(4);
    await pool.start();
    const r = pool.scale('target', 50);
    expect(r).to.include({ target: 50, ready: 0, creating: 4 });
    const until = Date.now() + 100_000;
    while (pool.numbers().idle < 50 && Date.now() < until) await sleep(100);
    expect(pool.numbers()).to.include({ idle: 50, creating: 0 });
    const { peak, processes, subcommands } = peakStarting(marks);
    expect(processes).to.equal(50);
    // The stand-in has no `auth status`, so the driver asks once and then not for minutes.
    expect(subcommands).to.be.at.most(1);
    expect(peak).to.be.at.most(4);
    // Creates did run side by side (not one at a time).
    expect(peak).to.be.at.least(2);
  });
});
