import { isToken, type Heartbeat } from '@shoal/protocol';

/**
 * Bounds on what a heartbeat may claim, checked before membership sees it.
 * A heartbeat is the only thing that puts a node in front of clients, so one
 * forged or broken message must not bend the balancer's view for long: a huge
 * `intervalMs` would keep a phantom "alive" for ever, a future `startedAt`
 * made every real heartbeat of that node look stale.
 */
export interface HeartbeatLimits {
  /** Shortest heartbeat period a node may claim (default 10 ms). */
  minIntervalMs: number;
  /** Longest (default 60 s): a silent node is gone within goneAfter × this. */
  maxIntervalMs: number;
  /** How far in the future `startedAt` may be, for clock skew between machines (default 60 s). */
  maxClockSkewMs: number;
  /** Pools one node may announce (default 64). */
  maxPools: number;
  /** Nodes one balancer keeps; a new id beyond it is refused (default 10,000). */
  maxNodes: number;
}

export const DEFAULT_HEARTBEAT_LIMITS: HeartbeatLimits = {
  minIntervalMs: 10,
  maxIntervalMs: 60_000,
  maxClockSkewMs: 60_000,
  maxPools: 64,
  maxNodes: 10_000,
};

/**
 * Why this heartbeat is refused, or undefined when it is acceptable. Pure.
 * `subjectNodeId` is the last token of the subject it came on: a node
 * heartbeats on its own subject only (with roles on, NATS checks who may
 * publish there at all).
 */
export function refuseHeartbeat(hb: Heartbeat, subjectNodeId: string, now: number, known: { has: boolean; count: number }, l: HeartbeatLimits = DEFAULT_HEARTBEAT_LIMITS): string | undefined {
  if (hb.nodeId !== subjectNodeId || !isToken(hb.nodeId)) return 'node_id_mismatch';
  if (hb.intervalMs < l.minIntervalMs || hb.intervalMs > l.maxIntervalMs) return 'interval_out_of_bounds';
  if (!(hb.startedAt > 0) || hb.startedAt > now + l.maxClockSkewMs) return 'started_in_future';
  if (!Number.isSafeInteger(hb.seq)) return 'seq_out_of_bounds';
  const pools = Object.keys(hb.pools);
  if (pools.length > l.maxPools) return 'too_many_pools';
  for (const name of pools) {
    const p = hb.pools[name] as unknown;
    if (!isToken(name) || p === null || typeof p !== 'object' || Array.isArray(p)) return 'bad_pool_stats';
  }
  if (!known.has && known.count >= l.maxNodes) return 'too_many_nodes';
  return undefined;
}
