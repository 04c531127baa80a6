import { BaseStrategy } from './base.js';
import type { Candidate } from './types.js';

/**
 * Cycles in nodeId order after the last node chosen. Remembering an id rather
 * than an index keeps the cycle fair when the filtered list changes between
 * calls (nodes joining, leaving, or losing their idle capacity).
 */
export class RoundRobin extends BaseStrategy {
  readonly name = 'round_robin' as const;
  private last: string | undefined;

  protected pick(list: readonly Candidate[]): Candidate {
    let first = list[0]!;
    let next: Candidate | undefined;
    for (const c of list) {
      if (c.nodeId < first.nodeId) first = c;
      if (this.last !== undefined && c.nodeId > this.last && (next === undefined || c.nodeId < next.nodeId)) next = c;
    }
    const chosen = next ?? first;
    this.last = chosen.nodeId;
    return chosen;
  }
}
