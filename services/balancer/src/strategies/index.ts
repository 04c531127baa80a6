import { LeastConnections } from './least-connections.js';
import { PowerOfTwo } from './p2c.js';
import { PerformanceBased } from './performance.js';
import { RoundRobin } from './round-robin.js';
import type { PerformanceWeights, Strategy, StrategyName } from './types.js';
import { WeightedRoundRobin } from './weighted-round-robin.js';

export type { Candidate, PerformanceWeights, Strategy, StrategyName } from './types.js';
export { capacityOf, loadOf, outstanding, pickMin, placeable, preferIdle, spareIdle } from './load.js';
export { BaseStrategy } from './base.js';
export { RoundRobin } from './round-robin.js';
export { LeastConnections } from './least-connections.js';
export { WeightedRoundRobin } from './weighted-round-robin.js';
export { PerformanceBased, DEFAULT_PERFORMANCE_WEIGHTS, performanceWeights } from './performance.js';
export { PowerOfTwo } from './p2c.js';

export interface StrategyOptions {
  /** For `performance_based`; missing entries keep their defaults. */
  performanceWeights?: Partial<PerformanceWeights>;
  /** For `p2c`; returns [0, 1). Defaults to Math.random. */
  rand?: () => number;
}

/** A Record keyed by every name, so adding a name to the protocol without a strategy fails to compile. */
const makers: Record<StrategyName, (o: StrategyOptions) => Strategy> = {
  round_robin: () => new RoundRobin(),
  least_connections: () => new LeastConnections(),
  weighted_round_robin: () => new WeightedRoundRobin(),
  performance_based: (o) => new PerformanceBased(o.performanceWeights),
  p2c: (o) => new PowerOfTwo(o.rand),
};

export const STRATEGY_NAMES: readonly StrategyName[] = Object.freeze(Object.keys(makers) as StrategyName[]);

export function isStrategyName(s: unknown): s is StrategyName {
  return typeof s === 'string' && Object.hasOwn(makers, s);
}

/** Each call returns a fresh strategy: round-robin positions and weights are per instance. */
export function createStrategy(name: StrategyName, opts: StrategyOptions = {}): Strategy {
  // Names also arrive from config files and the wire, where the type is only a promise.
  if (!isStrategyName(name)) throw new RangeError(`unknown strategy ${JSON.stringify(name)}; expected one of ${STRATEGY_NAMES.join(', ')}`);
  return makers[name](opts);
}
