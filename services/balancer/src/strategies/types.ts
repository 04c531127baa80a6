import type { StrategyRequest } from '@shoal/protocol';

/** Strategy names come from the wire schema so a `strategy` request and the factory cannot drift apart. */
export type StrategyName = StrategyRequest['strategy'];

/** One node as seen for one pool. */
export interface Candidate {
  nodeId: string;
  /** Operator weight (KV) or the pool's configured weight; 0 = never chosen. */
  weight: number;
  idle: number;
  total: number;
  max: number;
  active: number;
  waiting: number;
  creating: number;
  /** This balancer's placements sent to the node and not yet answered. */
  inFlight: number;
  /** From the heartbeat (EWMA). */
  latencyMs: number;
  requestRate: number;
  errorRate: number;
  /** 0..1, e.g. memory or cpu share. */
  resourceUsage: number;
}

export interface Strategy {
  readonly name: StrategyName;
  /** `list` is already filtered for health, draining and circuit state. */
  select(list: readonly Candidate[]): Candidate | undefined;
}

/** Same shape as `performanceWeights` of the `strategy` request. */
export interface PerformanceWeights {
  latency: number;
  throughput: number;
  errorRate: number;
  resource: number;
}
