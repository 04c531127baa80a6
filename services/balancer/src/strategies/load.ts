import type { Candidate } from './types.js';

/** Slots the node may hold; `total` can exceed `max` briefly after a scale-down, and 0 must not divide. */
export function capacityOf(c: Candidate): number {
  return Math.max(c.max, c.total, 1);
}

/** Work the node has or is about to have, counting our unanswered placements the heartbeat cannot show yet. */
export function outstanding(c: Candidate): number {
  return c.active + c.waiting + c.inFlight;
}

/** Outstanding work relative to capacity, so a big node and a small node compare fairly. */
export function loadOf(c: Candidate): number {
  return outstanding(c) / capacityOf(c);
}

/** Idle resources not already claimed by our own unanswered placements. */
export function spareIdle(c: Candidate): number {
  return c.idle - c.inFlight;
}

/** Weight 0 is the operator's way to take a node out of rotation without draining it. */
export function placeable(list: readonly Candidate[]): readonly Candidate[] {
  return list.every(isPlaceable) ? list : list.filter(isPlaceable);
}

function isPlaceable(c: Candidate): boolean {
  return Number.isFinite(c.weight) && c.weight > 0;
}

/**
 * A node with an idle resource answers at once; one without makes the caller
 * queue or wait for a creation. So whenever some node has spare idle
 * capacity, only those compete.
 */
export function preferIdle(list: readonly Candidate[]): readonly Candidate[] {
  const idle = list.filter((c) => spareIdle(c) > 0);
  return idle.length > 0 ? idle : list;
}

/**
 * The candidate with the smallest key. Scanning starts at `start` (mod length)
 * and only a strictly smaller key wins, so a caller that advances `start`
 * spreads ties instead of always handing them to the first node in the list.
 */
export function pickMin(list: readonly Candidate[], key: (c: Candidate) => number, start = 0): Candidate | undefined {
  const n = list.length;
  let best: Candidate | undefined;
  let bestKey = Infinity;
  for (let k = 0; k < n; k++) {
    const c = list[(start + k) % n]!;
    const v = key(c);
    if (best === undefined || v < bestKey) {
      best = c;
      bestKey = v;
    }
  }
  return best;
}
