import { parkKeyHash, type Heartbeat } from '@shoal/protocol';

/**
 * Which node holds each parked conversation, as the nodes' heartbeats list
 * them (`pools.<pool>.parkedHashes`, hashes of the keys): a hash and a map read per
 * keyed acquire, no lookup. A node's entries are rebuilt from each of its
 * heartbeats and dropped when it goes. Keys a node left out of its heartbeat
 * (over its byte budget, `parkedOmitted`) are not here: their acquires are
 * placed by strategy (the SDK that parked one asks its node first anyway).
 */
export class ParkIndex {
  /** `<pool>\0<key hash>` → node. */
  private readonly byKey = new Map<string, string>();
  /** Each node's keys, to drop them when its next heartbeat does not list them, or it goes. */
  private readonly byNode = new Map<string, string[]>();

  /** The node whose last heartbeat lists this parking key for the pool. */
  on(pool: string, key: unknown): string | undefined {
    return typeof key === 'string' && this.byKey.size > 0 ? this.byKey.get(`${pool}\u0000${parkKeyHash(key)}`) : undefined;
  }

  /** Rebuild one node's entries from its heartbeat. */
  observe(hb: Heartbeat): void {
    this.forget(hb.nodeId);
    const now: string[] = [];
    for (const [pool, st] of Object.entries(hb.pools)) {
      const keys = (st as { parkedHashes?: unknown }).parkedHashes;
      if (!Array.isArray(keys)) continue;
      for (const key of keys) if (typeof key === 'string') { const k = `${pool}\u0000${key}`; this.byKey.set(k, hb.nodeId); now.push(k); }
    }
    if (now.length) this.byNode.set(hb.nodeId, now);
  }

  /** A node gone (or replaced by a restart): its parked resources went with it. */
  forget(nodeId: string): void {
    const old = this.byNode.get(nodeId);
    if (old) for (const k of old) if (this.byKey.get(k) === nodeId) this.byKey.delete(k);
    this.byNode.delete(nodeId);
  }

  /** How many keys are indexed (status, tests). */
  get size(): number {
    return this.byKey.size;
  }
}

/**
 * The parked node among the candidates, if it may take it: a node the
 * operator set to weight 0 is out of rotation, parked keys or not. This
 * holds for requests through a balancer; the SDK's direct try at the node
 * is refused by the node itself for weight 0 (the runtime setting, which
 * it watches) and for an unhealthy verdict, not for the circuit breaker.
 */
export function pinnedCandidate<C extends { nodeId: string; weight?: number }>(candidates: readonly C[], prefer: string | undefined): C | undefined {
  if (prefer === undefined) return undefined;
  return candidates.find((c) => c.nodeId === prefer && (c.weight ?? 1) > 0);
}
