import { BaseStrategy } from './base.js';
import { loadOf, pickMin } from './load.js';
import type { Candidate, PerformanceWeights } from './types.js';

/** The split of the session-pool design (latency 40%, throughput 30%, errors 20%, resource 10%). */
export const DEFAULT_PERFORMANCE_WEIGHTS: Readonly<PerformanceWeights> = Object.freeze({
  latency: 0.4,
  throughput: 0.3,
  errorRate: 0.2,
  resource: 0.1,
});

export function performanceWeights(w: Partial<PerformanceWeights> = {}): PerformanceWeights {
  const out = { ...DEFAULT_PERFORMANCE_WEIGHTS, ...w };
  for (const [k, v] of Object.entries(out)) {
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`performance weight ${k} must be a finite number >= 0, got ${String(v)}`);
  }
  return out;
}

/**
 * Ranks by `(1 + penalty) * (1 + load)`, lowest first.
 *
 * `penalty` (0..1) is the weighted shortfall against the best candidate on each
 * heartbeat metric, each measured as `(x - best) / largest`: zero for the
 * best node, scale-free, and a 10 ms vs 11 ms gap stays small (min-max scaling
 * would blow it up to 0 vs 1). Throughput is the observed request rate, where
 * higher is better.
 *
 * `load` counts our in-flight placements, and it is the only input that moves
 * between heartbeats. Multiplying by it means the best node keeps winning
 * only until it carries (1 + penalty gap) times the load of the others, so a
 * burst is shared in proportion to quality rather than all landing on one node.
 */
export class PerformanceBased extends BaseStrategy {
  readonly name = 'performance_based' as const;
  readonly weights: Readonly<PerformanceWeights>;
  private turn = 0;

  constructor(weights: Partial<PerformanceWeights> = {}) {
    super();
    this.weights = Object.freeze(performanceWeights(weights));
  }

  protected pick(list: readonly Candidate[]): Candidate {
    const w = this.weights;
    const sum = w.latency + w.throughput + w.errorRate + w.resource;
    const latency = worseThanBest(list, (c) => c.latencyMs, 'low');
    const throughput = worseThanBest(list, (c) => c.requestRate, 'high');
    const errors = worseThanBest(list, (c) => c.errorRate, 'low');
    const resource = worseThanBest(list, (c) => c.resourceUsage, 'low');
    const cost = new Map<Candidate, number>();
    list.forEach((c, i) => {
      const penalty = sum > 0
        ? (w.latency * latency[i]! + w.throughput * throughput[i]! + w.errorRate * errors[i]! + w.resource * resource[i]!) / sum
        : 0;
      cost.set(c, (1 + penalty) * (1 + loadOf(c)));
    });
    return pickMin(list, (c) => cost.get(c)!, this.turn++)!;
  }
}

/** Per candidate, how far it falls short of the best value, as a share of the largest value (0..1). */
function worseThanBest(list: readonly Candidate[], get: (c: Candidate) => number, better: 'low' | 'high'): number[] {
  const xs = list.map((c) => {
    const x = get(c);
    return Number.isFinite(x) && x > 0 ? x : 0;
  });
  const max = Math.max(...xs);
  if (max <= 0) return xs.map(() => 0);
  const min = Math.min(...xs);
  return xs.map((x) => (better === 'low' ? x - min : max - x) / max);
}
