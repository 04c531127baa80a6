import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LATENCY_BUCKETS_MS, Metrics } from '@shoal/protocol';
import type { Pool, PoolObserver } from './pool.js';
import type { Logger } from '@shoal/runtime';

/**
 * The node's Prometheus metrics, named as in the session-pool design with
 * `pool`, `kind` and `node` labels added. Gauges are read from the pools at
 * scrape time, so the hot path only increments counters.
 */
export class NodeMetrics {
  readonly registry = new Registry();
  private readonly ops: Counter;
  private readonly latency: Histogram;
  private readonly reuseCount: Counter;
  private readonly expired: Counter;
  readonly errors: Counter;

  constructor(private readonly nodeId: string, pools: () => Iterable<Pool>, inFlight: () => number) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    const labels = ['pool', 'kind', 'node'];
    this.ops = new Counter({ name: Metrics.OPERATIONS_TOTAL, help: 'Pool operations by result', labelNames: [...labels, 'operation', 'result'], registers: [r] });
    this.latency = new Histogram({ name: Metrics.LATENCY_HISTOGRAM, help: 'Operation latency in milliseconds', labelNames: [...labels, 'operation'], buckets: LATENCY_BUCKETS_MS, registers: [r] });
    this.reuseCount = new Counter({ name: Metrics.REUSE_COUNT_TOTAL, help: 'Acquires served by a reused resource', labelNames: labels, registers: [r] });
    this.expired = new Counter({ name: Metrics.LEASES_EXPIRED_TOTAL, help: 'Leases reclaimed after their TTL', labelNames: labels, registers: [r] });
    this.errors = new Counter({ name: Metrics.ERRORS_TOTAL, help: 'Errors answered on the wire by code', labelNames: ['node', 'code'], registers: [r] });
    new Gauge({
      name: Metrics.POOL_SIZE, help: 'Resources by state', labelNames: [...labels, 'type'], registers: [r],
      collect() {
        for (const p of pools()) {
          const n = p.numbers();
          const l = { pool: p.name, kind: p.kind, node: nodeId };
          this.set({ ...l, type: 'total' }, n.total);
          this.set({ ...l, type: 'active' }, n.active);
          this.set({ ...l, type: 'idle' }, n.idle);
          this.set({ ...l, type: 'ready' }, n.idle);
          this.set({ ...l, type: 'creating' }, n.creating ?? 0);
          this.set({ ...l, type: 'waiting' }, n.waiting);
          this.set({ ...l, type: 'target' }, p.targetSize);
        }
      },
    });
    new Gauge({
      name: Metrics.REUSE_RATE, help: 'Share of acquires served by a reused resource', labelNames: labels, registers: [r],
      collect() { for (const p of pools()) this.set({ pool: p.name, kind: p.kind, node: nodeId }, p.meter.reuseRate); },
    });
    new Gauge({
      name: Metrics.RESOURCE_USAGE, help: 'Resource usage against the pool limits (0..1)', labelNames: [...labels, 'resource'], registers: [r],
      collect() {
        const cpu = process.cpuUsage();
        for (const p of pools()) {
          const l = { pool: p.name, kind: p.kind, node: nodeId };
          const max = p.limits.maxTotalMemoryBytes;
          this.set({ ...l, resource: 'memory' }, max > 0 ? p.memoryBytes() / max : 0);
          this.set({ ...l, resource: 'cpu' }, (cpu.user + cpu.system) / 1e6 / Math.max(1, process.uptime()));
        }
      },
    });
    new Gauge({
      name: Metrics.POOL_AVAILABLE, help: 'Whether the pool can make resources (0 while its backend is down)', labelNames: labels, registers: [r],
      collect() { for (const p of pools()) this.set({ pool: p.name, kind: p.kind, node: nodeId }, p.availability().available ? 1 : 0); },
    });
    new Gauge({ name: Metrics.NODE_IN_FLIGHT, help: 'Requests in flight on the node', labelNames: ['node'], registers: [r], collect() { this.set({ node: nodeId }, inFlight()); } });
  }

  /**
   * A pool's observer. Labelled children are resolved once per label set and
   * kept: prom-client's label lookup on every inc() was ~10 µs of an acquire
   * cycle (17 % of the node's busy time in the benchmark's profile).
   */
  observer(pool: string, kind: string, log: Logger): PoolObserver {
    const l = { pool, kind, node: this.nodeId };
    const counters = new Map<string, { inc(): void }>();
    const histograms = new Map<string, { observe(v: number): void }>();
    const expired = this.expired.labels(l);
    // Exported at 0 from the start: `increase()` over a series that appears only at its first leak misses that leak.
    expired.inc(0);
    return {
      op: (operation, result, ms) => {
        const key = operation + '|' + result;
        let c = counters.get(key);
        if (!c) counters.set(key, (c = this.ops.labels({ ...l, operation, result })));
        c.inc();
        if (ms !== undefined && result === 'success') {
          let h = histograms.get(operation);
          if (!h) histograms.set(operation, (h = this.latency.labels({ ...l, operation })));
          h.observe(ms);
        }
      },
      leaseExpired: (info) => {
        expired.inc();
        log.warn('lease expired (holder gone?)', { pool, ...info });
      },
      log: (level, msg, fields) => log[level](msg, fields),
    };
  }

  private readonly reuseChildren = new Map<string, { inc(): void }>();

  reused(pool: string, kind: string): void {
    let c = this.reuseChildren.get(pool);
    if (!c) this.reuseChildren.set(pool, (c = this.reuseCount.labels({ pool, kind, node: this.nodeId })));
    c.inc();
  }
}
