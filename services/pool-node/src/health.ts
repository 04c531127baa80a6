import { totalmem } from 'node:os';
import { parseHealthVerdict, type HealthVerdict, type ProbePool, type ProbeReply } from '@shoal/protocol';
import type { Logger } from '@shoal/runtime';
import type { Driver } from './driver.js';
import type { Pool } from './pool.js';

/**
 * The node's side of health checking: the probe's answer, and acting on the
 * verdicts about this node (a node unhealthy for `drainAfterMs` drains itself:
 * a checker can tell, only the node can step aside). The ping is answered by
 * the node itself, synchronously, so that a hung event loop fails it.
 */
export class NodeHealth {
  /** Latest verdict about this node, by the checker's `at`. */
  private last: HealthVerdict | undefined;
  private unhealthySince: number | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  readonly memoryLimitBytes: number;

  constructor(
    private readonly nodeId: string,
    private readonly pools: ReadonlyMap<string, Pool>,
    private readonly drivers: ReadonlyMap<string, Driver>,
    private readonly opts: { memoryLimitBytes?: number; drainAfterMs: number; drain: (why: string) => void },
    private readonly log: Logger,
  ) {
    this.memoryLimitBytes = opts.memoryLimitBytes ?? systemMemoryLimit();
  }

  /**
   * Every pool's round trip (one idle resource validated, in parallel; not
   * for a pool whose backend is known down), memory and backend health.
   */
  async probe(): Promise<ProbeReply> {
    const entries = await Promise.all([...this.pools].map(async ([name, pool]): Promise<[string, ProbePool]> => {
      // A backend known to be down is that pool's verdict; waiting on its validation would only make the node look slow.
      const known = this.backend(name, pool);
      if (!known.healthy) return [name, known];
      const t0 = performance.now();
      let valid: boolean | undefined;
      try {
        valid = await pool.probeIdle();
      } catch {
        valid = false;
      }
      const ms = performance.now() - t0;
      return [name, { ...(valid === undefined ? {} : { ms, valid }), ...this.backend(name, pool) }];
    }));
    let resourcesBytes = 0;
    for (const pool of this.pools.values()) resourcesBytes += pool.memoryBytes();
    return { nodeId: this.nodeId, rssBytes: process.memoryUsage.rss(), resourcesBytes, memoryLimitBytes: this.memoryLimitBytes, pools: Object.fromEntries(entries) };
  }

  private backend(name: string, pool: Pool): { healthy: boolean; reason?: string } {
    // The driver's own knowledge first (Weaviate down while connections still exist), then the creates' record.
    let b: { healthy: boolean; reason?: string } | undefined;
    try {
      b = this.drivers.get(name)?.backend?.();
    } catch {
      b = undefined;
    }
    if (b && !b.healthy) return b;
    const a = pool.availability();
    return a.available ? { healthy: true } : { healthy: false, ...(a.reason ? { reason: a.reason } : {}) };
  }

  /** A verdict about this node arrived (subject). Older ones (by the checker's `at`) are ignored. */
  onVerdict(data: Uint8Array): void {
    let v: HealthVerdict;
    try {
      v = parseHealthVerdict(data);
    } catch (err) {
      this.log.debug('ignoring a bad health verdict', { err: (err as Error).message });
      return;
    }
    if (v.nodeId !== this.nodeId || (this.last && v.at < this.last.at)) return;
    this.last = v;
    if (v.healthy) {
      if (this.unhealthySince !== undefined) this.log.info('health checker says healthy again', { checkerId: v.checkerId });
      this.unhealthySince = undefined;
      clearTimeout(this.drainTimer);
      this.drainTimer = undefined;
      return;
    }
    if (this.unhealthySince !== undefined) return;
    this.unhealthySince = Date.now();
    this.log.warn('health checker says unhealthy', { checkerId: v.checkerId, reason: v.reason, drainAfterMs: this.opts.drainAfterMs || null });
    if (this.opts.drainAfterMs > 0) {
      this.drainTimer = setTimeout(() => {
        this.drainTimer = undefined;
        const why = `unhealthy for ${this.opts.drainAfterMs} ms: ${this.last?.reason ?? 'no reason given'}`;
        this.log.warn('draining itself', { reason: why });
        this.opts.drain(why);
      }, this.opts.drainAfterMs);
      this.drainTimer.unref?.();
    }
  }

  get verdict(): HealthVerdict | undefined {
    return this.last;
  }

  /**
   * Whether the latest verdict takes this node (or its pool) out of rotation,
   * as it does in the balancers: then a parked key's direct acquire is
   * refused (NOT_PARKED) and goes through a balancer instead.
   */
  outOfRotation(pool: string): boolean {
    const v = this.last;
    return v !== undefined && (!v.healthy || v.pools[pool]?.healthy === false);
  }

  stop(): void {
    clearTimeout(this.drainTimer);
  }
}

/**
 * The memory a node may use, for memory_usage checks when `node.memory_limit`
 * is not set: the cgroup's limit (a container's), else the machine's memory.
 */
export function systemMemoryLimit(): number {
  const total = totalmem();
  const c = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.();
  return typeof c === 'number' && c > 0 && c < total ? c : total;
}
