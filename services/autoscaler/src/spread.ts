/** One live node of a pool, as its heartbeat tells. */
export interface NodeSlot {
  nodeId: string;
  min: number;
  max: number;
  weight: number;
  /** Resources wanted there right now: active + waiting. */
  demand: number;
  /** The node's target now; spreading keeps it where it can (no churn between nodes). */
  current: number;
}

export interface Spread {
  /** Per-node targets. */
  targets: Record<string, number>;
  /** What was spread: the request within what the nodes can hold. */
  applied: number;
  /** What the nodes can hold: the sums of min_size and of max_size (a weight-0 node holds only its min). */
  min: number;
  max: number;
  /** The request was outside min..max. */
  clamped: boolean;
}

/**
 * Spread a pool's cluster-wide target over its live nodes. Each node stays
 * within its min_size..max_size (a weight-0 node gets no more than its min:
 * nothing would be placed there). Starting from the nodes' current targets,
 * units are added where unmet demand is largest, then where the target per
 * unit of weight is smallest; units are taken back where the surplus over
 * demand is largest, then where the target per unit of weight is largest.
 * Deterministic: ties go to the smaller node id.
 */
export function spread(target: number, nodes: readonly NodeSlot[]): Spread {
  const ns = [...nodes].sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  const cap = (n: NodeSlot) => (n.weight > 0 ? n.max : n.min);
  const min = ns.reduce((a, n) => a + n.min, 0);
  const max = ns.reduce((a, n) => a + Math.max(n.min, cap(n)), 0);
  const applied = Math.min(max, Math.max(min, target));
  const t = ns.map((n) => Math.min(Math.max(n.min, cap(n)), Math.max(n.min, n.current)));
  let diff = applied - t.reduce((a, x) => a + x, 0);
  // Sainte-Laguë divisors (t + 0.5): shares end up proportional to weight, not biased to the heaviest node.
  const share = (i: number, extra: number) => (t[i]! + extra - 0.5) / Math.max(ns[i]!.weight, 1e-9);
  while (diff > 0) {
    let best = -1;
    for (let i = 0; i < ns.length; i++) {
      if (t[i]! >= cap(ns[i]!)) continue;
      if (best < 0) { best = i; continue; }
      const u = Math.max(0, ns[i]!.demand - t[i]!), bu = Math.max(0, ns[best]!.demand - t[best]!);
      if (u > bu || (u === bu && share(i, 1) < share(best, 1))) best = i;
    }
    if (best < 0) break;
    t[best]!++;
    diff--;
  }
  while (diff < 0) {
    let best = -1;
    for (let i = 0; i < ns.length; i++) {
      if (t[i]! <= ns[i]!.min) continue;
      if (best < 0) { best = i; continue; }
      const s = Math.max(0, t[i]! - ns[i]!.demand), bs = Math.max(0, t[best]! - ns[best]!.demand);
      if (s > bs || (s === bs && share(i, 0) > share(best, 0))) best = i;
    }
    if (best < 0) break;
    t[best]!--;
    diff++;
  }
  return { targets: Object.fromEntries(ns.map((n, i) => [n.nodeId, t[i]!])), applied, min, max, clamped: applied !== target };
}
