import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LATENCY_BUCKETS_MS, Metrics } from '@shoal/protocol';

/** Node states counted by the `shoal_balancer_nodes` gauge. */
export const NODE_GAUGE_STATES = ['alive', 'suspect', 'draining', 'unhealthy', 'open', 'half_open'] as const;
export type NodeGaugeState = (typeof NODE_GAUGE_STATES)[number];

/**
 * Placement results: `success` (a lease went back, or a node accepted a one-shot exec),
 * `error` (the node's final error was forwarded, e.g. POOL_TIMEOUT),
 * `refused` (a retryable refusal, tried elsewhere), `unreachable` (no
 * responders or no answer in time), `no_nodes` (no eligible node; node label
 * empty), `bad_request`.
 */
export type PlacementResult = 'success' | 'error' | 'refused' | 'unreachable' | 'no_nodes' | 'bad_request';

export class BalancerMetrics {
  readonly registry = new Registry();
  private readonly placements: Counter;
  private readonly latency: Histogram;
  // Labelled children, cached: prom-client hashes the label set on every call otherwise (hot path).
  private readonly placementChildren = new Map<string, { inc(): void }>();
  private readonly latencyChildren = new Map<string, { observe(v: number): void }>();

  constructor(balancerId: string, nodeStates: () => Record<NodeGaugeState, number>) {
    const r = this.registry;
    r.setDefaultLabels({ balancer: balancerId });
    collectDefaultMetrics({ register: r });
    this.placements = new Counter({ name: Metrics.PLACEMENTS_TOTAL, help: 'Placement tries by pool, node and result', labelNames: ['pool', 'node', 'result'], registers: [r] });
    this.latency = new Histogram({
      name: Metrics.PLACEMENT_LATENCY, help: 'Time from a request reaching the balancer to its answer (acquire) or hand-off (exec), ms',
      labelNames: ['pool', 'operation', 'result'], buckets: LATENCY_BUCKETS_MS, registers: [r],
    });
    new Gauge({
      name: Metrics.BALANCER_NODES, help: 'Known pool nodes by state, as this replica sees them', labelNames: ['state'], registers: [r],
      collect() {
        const counts = nodeStates();
        for (const s of NODE_GAUGE_STATES) this.set({ state: s }, counts[s]);
      },
    });
  }

  placement(pool: string, node: string, result: PlacementResult): void {
    const key = `${pool}\0${node}\0${result}`;
    let c = this.placementChildren.get(key);
    if (!c) this.placementChildren.set(key, (c = this.placements.labels({ pool, node, result })));
    c.inc();
  }

  /** Drop a gone node's series: node ids of restarted processes would otherwise pile up. */
  forgetNode(nodeId: string): void {
    for (const key of [...this.placementChildren.keys()]) {
      const [pool, node, result] = key.split('\0');
      if (node !== nodeId) continue;
      this.placementChildren.delete(key);
      this.placements.remove({ pool: pool!, node, result: result! });
    }
  }

  done(pool: string, operation: 'acquire' | 'exec', result: string, ms: number): void {
    const key = `${pool}\0${operation}\0${result}`;
    let h = this.latencyChildren.get(key);
    if (!h) this.latencyChildren.set(key, (h = this.latency.labels({ pool, operation, result })));
    h.observe(ms);
  }
}
