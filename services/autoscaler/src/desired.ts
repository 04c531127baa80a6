/** What the pool-node count of a pool is computed from. */
export interface DesiredInput {
  /** Live capacity: nodes that heartbeat, are not draining and are not unhealthy. */
  liveNodes: number;
  /** The max_size one pool-node offers (the largest seen among the pool's nodes; a new replica runs the same config). */
  nodeMax: number;
  /** Resources wanted now (active + waiting, summed). */
  demand: number;
  /** The cluster-wide target asked for (before clamping to what the live nodes hold). */
  requested: number;
  scaleUpThreshold: number;
}

/**
 * Pool-node replicas the pool needs: enough nodes at max_size to hold the
 * larger of the target asked for and the demand at the scale-up threshold.
 * At least one (a pool with no node cannot serve its first acquire).
 */
export function desiredNodes(i: DesiredInput): { desired: number; need: number } {
  const need = Math.max(i.requested, Math.ceil(i.demand / Math.max(i.scaleUpThreshold, 1e-9) - 1e-9));
  const per = Math.max(1, i.nodeMax);
  return { desired: Math.max(1, Math.ceil(need / per)), need };
}

/**
 * Damp decreases (as a scale-down stabilization window does): publish the
 * largest value computed during the last `windowMs`. Until the history covers
 * the window, no fewer than the nodes running now: a leader that just took
 * over does not drain what its predecessor asked for.
 */
export function stabilizeDesired(history: readonly { at: number; desired: number }[], now: number, windowMs: number, candidate: number, liveNodes: number): number {
  let out = candidate;
  for (const h of history) if (h.at >= now - windowMs && h.at <= now) out = Math.max(out, h.desired);
  const covered = history.length > 0 && history[0]!.at <= now - windowMs;
  return covered ? out : Math.max(out, liveNodes);
}
