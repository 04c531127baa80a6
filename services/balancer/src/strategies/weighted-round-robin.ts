import { BaseStrategy } from './base.js';
import type { Candidate } from './types.js';

/** Forget nodes not offered for this many picks, so node ids of restarted processes do not pile up. */
const FORGET_AFTER_PICKS = 10_000;

/**
 * nginx's smooth weighted round robin: each pick adds every node's weight to
 * its current weight, takes the largest, and subtracts the total from the
 * winner. Over one cycle (sum of weights picks) every node is chosen exactly
 * `weight` times, interleaved rather than in runs (5,1,1 gives a,a,b,a,c,a,a).
 * Current weights live here, keyed by nodeId, so nodes may join and leave.
 */
export class WeightedRoundRobin extends BaseStrategy {
  readonly name = 'weighted_round_robin' as const;
  private readonly current = new Map<string, { cw: number; seen: number }>();
  private picks = 0;

  protected pick(list: readonly Candidate[]): Candidate {
    const tick = ++this.picks;
    let total = 0;
    let best: Candidate | undefined;
    let bestCw = -Infinity;
    let bestEntry: { cw: number; seen: number } | undefined;
    for (const c of list) {
      let e = this.current.get(c.nodeId);
      if (e === undefined) {
        e = { cw: 0, seen: tick };
        this.current.set(c.nodeId, e);
      }
      e.cw += c.weight;
      e.seen = tick;
      total += c.weight;
      if (e.cw > bestCw) {
        best = c;
        bestCw = e.cw;
        bestEntry = e;
      }
    }
    bestEntry!.cw -= total;
    if (tick % 1000 === 0) this.forgetStale(tick);
    return best!;
  }

  private forgetStale(tick: number): void {
    for (const [id, e] of this.current) if (tick - e.seen > FORGET_AFTER_PICKS) this.current.delete(id);
  }
}
