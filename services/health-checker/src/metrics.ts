import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LATENCY_BUCKETS_MS } from '@shoal/protocol';

/** The health-checker's metric names, in one place. */
export const HealthMetricNames = {
  /** counter {check=ping|response_time|memory_usage|backend, result=ok|fail} */
  CHECKS_TOTAL: 'shoal_health_checks_total',
  /** histogram (ms) {probe=ping|probe}: round trips that were answered */
  PROBE_LATENCY: 'shoal_health_probe_latency_ms',
  /** gauge {state=healthy|unhealthy}: nodes by this checker's own judgement */
  NODES: 'shoal_health_nodes',
  /** counter {healthy=true|false}: verdicts written (KV) and published */
  VERDICTS_TOTAL: 'shoal_health_verdicts_total',
} as const;

export class CheckerMetrics {
  readonly registry = new Registry();
  private readonly checks: Counter;
  private readonly latency: Histogram;
  private readonly verdicts: Counter;

  constructor(checkerId: string, nodeStates: () => { healthy: number; unhealthy: number }) {
    const r = this.registry;
    r.setDefaultLabels({ checker: checkerId });
    collectDefaultMetrics({ register: r });
    this.checks = new Counter({ name: HealthMetricNames.CHECKS_TOTAL, help: 'Check results by check type', labelNames: ['check', 'result'], registers: [r] });
    this.latency = new Histogram({ name: HealthMetricNames.PROBE_LATENCY, help: 'Answered ping and probe round trips, ms', labelNames: ['probe'], buckets: LATENCY_BUCKETS_MS, registers: [r] });
    this.verdicts = new Counter({ name: HealthMetricNames.VERDICTS_TOTAL, help: 'Verdicts written and published', labelNames: ['healthy'], registers: [r] });
    new Gauge({
      name: HealthMetricNames.NODES, help: "Nodes by this checker's judgement", labelNames: ['state'], registers: [r],
      collect() {
        const c = nodeStates();
        this.set({ state: 'healthy' }, c.healthy);
        this.set({ state: 'unhealthy' }, c.unhealthy);
      },
    });
  }

  check(type: string, ok: boolean): void {
    this.checks.inc({ check: type, result: ok ? 'ok' : 'fail' });
  }

  roundTrip(probe: 'ping' | 'probe', ms: number): void {
    this.latency.observe({ probe }, ms);
  }

  verdict(healthy: boolean): void {
    this.verdicts.inc({ healthy: String(healthy) });
  }
}
