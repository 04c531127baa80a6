/**
 * Per pool, the nodes a placement may consider, sorted into tiers by what an
 * acquire would find there, and kept up to date by the events that change
 * them (a heartbeat, one of our placements or its answer, a weight, a health
 * verdict, the sweep) rather than recomputed per acquire. An acquire then
 * looks at a bounded window of the best non-empty tier, whatever the number
 * of nodes.
 */

/** 0: an idle resource not claimed by our own placements; 1: room to create one; 2: full (the request would queue) or unavailable. */
export type Tier = 0 | 1 | 2;
export const TIERS: readonly Tier[] = [0, 1, 2];

/** The numbers a tier is decided from (one node, one pool, plus our in-flight placements on the node). */
export interface TierInput {
  idle: number;
  total: number;
  creating: number;
  waiting: number;
  max: number;
  inFlight: number;
  /** false: the pool says its creates keep failing (it may still have idle resources). */
  available?: boolean;
}

/**
 * Pure, so that the incremental index and a full scan agree by construction
 * of the rule and only the bookkeeping is under test.
 */
export function tierOf(s: TierInput): Tier {
  // A pool whose creates keep failing only gets requests when no other node can take them.
  if (s.available === false) return 2;
  if (s.idle - s.inFlight > 0) return 0;
  // Slots not yet taken by resources or creates, minus what is already
  // queued and our placements that found no idle resource.
  const free = s.max - s.total - s.creating;
  const demand = s.waiting + Math.max(0, s.inFlight - s.idle);
  return free > demand ? 1 : 2;
}

/** O(1) add, remove and membership; a window from a rotating cursor. Order is not kept (swap-remove). */
export class IndexedSet {
  private readonly items: string[] = [];
  private readonly at = new Map<string, number>();
  private cursor = 0;

  get size(): number {
    return this.items.length;
  }

  has(id: string): boolean {
    return this.at.has(id);
  }

  add(id: string): void {
    if (this.at.has(id)) return;
    this.at.set(id, this.items.length);
    this.items.push(id);
  }

  delete(id: string): void {
    const i = this.at.get(id);
    if (i === undefined) return;
    const last = this.items.pop()!;
    this.at.delete(id);
    if (last !== id) {
      this.items[i] = last;
      this.at.set(last, i);
    }
  }

  /**
   * Ids from the cursor on, wrapping, until `take` returns false or every
   * id was offered once. The cursor moves one step per call, so that over
   * `size` calls every id starts a window once.
   */
  scan(take: (id: string) => boolean): void {
    const n = this.items.length;
    if (n === 0) return;
    const start = this.cursor % n;
    this.cursor = (start + 1) % n;
    for (let k = 0; k < n; k++) {
      if (!take(this.items[(start + k) % n]!)) return;
    }
  }

  values(): readonly string[] {
    return this.items;
  }
}

/** The tiers of one pool. */
export class PoolIndex {
  readonly tiers: readonly [IndexedSet, IndexedSet, IndexedSet] = [new IndexedSet(), new IndexedSet(), new IndexedSet()];
  private readonly tierById = new Map<string, Tier>();

  /** Put the node in `tier`, or take it out of the index (`undefined`). */
  set(id: string, tier: Tier | undefined): void {
    const prev = this.tierById.get(id);
    if (prev === tier) return;
    if (prev !== undefined) this.tiers[prev].delete(id);
    if (tier === undefined) {
      this.tierById.delete(id);
    } else {
      this.tiers[tier].add(id);
      this.tierById.set(id, tier);
    }
  }

  tierOf(id: string): Tier | undefined {
    return this.tierById.get(id);
  }

  get size(): number {
    return this.tierById.size;
  }
}
