import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** The autoscaler's metric names: one place. */
export const AutoscalerMetricNames = {
  /** counter {pool, direction=up|down, reason=utilization|policy:<name>|predictive|admin} */
  DECISIONS_TOTAL: 'shoal_autoscaler_decisions_total',
  /** gauge: 1 while this replica leads */
  LEADER: 'shoal_autoscaler_leader',
  /** gauge: the epoch of this replica's current or last term (0: never led) */
  EPOCH: 'shoal_autoscaler_epoch',
  /** gauge {pool}: pool-node replicas the pool needs (what KEDA or an HPA external metric reads) */
  DESIRED_POOL_NODES: 'shoal_desired_pool_nodes',
  /** gauge {pool}: cluster-wide target in force */
  TARGET: 'shoal_autoscaler_target',
  /** gauge {pool}: utilization as defined in docs/architecture.md */
  UTILIZATION: 'shoal_autoscaler_utilization',
  /** counter {node}: scale commands a node refused as STALE_EPOCH */
  STALE_REFUSALS_TOTAL: 'shoal_autoscaler_stale_epoch_refusals_total',
} as const;

export class AutoscalerMetrics {
  readonly registry = new Registry();
  readonly decisions: Counter;
  readonly leader: Gauge;
  readonly epoch: Gauge;
  readonly desired: Gauge;
  readonly target: Gauge;
  readonly utilization: Gauge;
  readonly staleRefusals: Counter;

  constructor(autoscalerId: string) {
    const r = this.registry;
    r.setDefaultLabels({ autoscaler: autoscalerId });
    collectDefaultMetrics({ register: r });
    const M = AutoscalerMetricNames;
    this.decisions = new Counter({ name: M.DECISIONS_TOTAL, help: 'Scaling actions taken by the leader', labelNames: ['pool', 'direction', 'reason'], registers: [r] });
    this.leader = new Gauge({ name: M.LEADER, help: '1 while this replica is the leader', registers: [r] });
    this.epoch = new Gauge({ name: M.EPOCH, help: 'Epoch of this replica\'s current or last leadership term', registers: [r] });
    this.desired = new Gauge({ name: M.DESIRED_POOL_NODES, help: 'Pool-node replicas each pool needs', labelNames: ['pool'], registers: [r] });
    this.target = new Gauge({ name: M.TARGET, help: 'Cluster-wide target in force per pool', labelNames: ['pool'], registers: [r] });
    this.utilization = new Gauge({ name: M.UTILIZATION, help: '(active + waiting) / (total + creating) per pool', labelNames: ['pool'], registers: [r] });
    this.staleRefusals = new Counter({ name: M.STALE_REFUSALS_TOTAL, help: 'Scale commands refused by a node as from an older epoch', labelNames: ['node'], registers: [r] });
    this.leader.set(0);
    this.epoch.set(0);
  }

  /** A follower publishes no per-pool numbers: only the leader's are current. */
  clearPools(): void {
    this.desired.reset();
    this.target.reset();
    this.utilization.reset();
  }
}
