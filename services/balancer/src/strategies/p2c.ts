import { BaseStrategy } from './base.js';
import { loadOf } from './load.js';
import type { Candidate } from './types.js';

/**
 * Power of two choices: compare two random nodes and take the less loaded.
 * Unlike "always the least loaded", several balancers with the same stale
 * view do not all pile onto the same node.
 */
export class PowerOfTwo extends BaseStrategy {
  readonly name = 'p2c' as const;

  constructor(private readonly rand: () => number = Math.random) {
    super();
  }

  protected pick(list: readonly Candidate[]): Candidate {
    const n = list.length;
    if (n === 1) return list[0]!;
    const i = this.index(n);
    let j = this.index(n - 1);
    if (j >= i) j++;
    const a = list[i]!;
    const b = list[j]!;
    return loadOf(b) < loadOf(a) ? b : a;
  }

  /** Clamped because a custom source may return exactly 1 or a little outside [0, 1). */
  private index(n: number): number {
    const r = this.rand();
    return Math.min(n - 1, Math.max(0, Math.floor((Number.isFinite(r) ? r : 0) * n)));
  }
}
