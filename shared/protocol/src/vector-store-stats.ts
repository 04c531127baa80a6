/**
 * The design's connection-pool statistics (`GET /vector-store/pool/stats`):
 * per node from the driver and its pool, and cluster-wide by summing what
 * every node reports. Pure functions only; the driver owns the counters.
 */

/** Exactly the design's `stats` object. */
export interface VectorStoreStats {
  /** false when VECTOR_STORE_USE_POOL=false (a fresh client per operation). */
  enabled: boolean;
  total_connections: number;
  current_active: number;
  current_idle: number;
  /** Connections that can be handed out right now (the idle ones). */
  available_connections: number;
  total_connections_created: number;
  total_connections_closed: number;
  /** Connections handed out (acquires served). */
  total_requests: number;
  /** Mean time a request waited for a connection, seconds (recent: EWMA over ~10 acquires). */
  avg_wait_time: number;
  health_check_failures: number;
}

/** The design's `get_connection_metrics()` entry; times in seconds. */
export interface ConnectionMetrics {
  id: number;
  age: number;
  last_used: number;
  in_use: boolean;
  alive: boolean;
}

export interface VectorStoreStatsResponse {
  success: true;
  stats: VectorStoreStats;
}

/** What the driver's `stats()` hook returns (in node status as `pools.<name>.driver`). */
export interface WeaviateDriverStats {
  kind: 'weaviate';
  endpoint: string;
  stats: VectorStoreStats;
  connections: ConnectionMetrics[];
}

export interface DriverCounters {
  created: number;
  closed: number;
  healthCheckFailures: number;
}

/** The pool's numbers as the driver sees them (PoolView plus its meter). */
export interface PoolFigures {
  total: number;
  active: number;
  idle: number;
  acquires: number;
  /** ms */
  acquireLatency: number;
}

export function nodeStats(enabled: boolean, pool: PoolFigures, c: DriverCounters, openClients: number): VectorStoreStats {
  // Legacy mode: the pool holds placeholders; the connections are the per-call clients open now.
  const total = enabled ? pool.total : openClients;
  return {
    enabled,
    total_connections: total,
    current_active: enabled ? pool.active : openClients,
    current_idle: enabled ? pool.idle : 0,
    available_connections: pool.idle,
    total_connections_created: c.created,
    total_connections_closed: c.closed,
    total_requests: pool.acquires,
    avg_wait_time: round(pool.acquireLatency / 1000, 6),
    health_check_failures: c.healthCheckFailures,
  };
}

const round = (x: number, digits: number) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : 0);

const KEYS: (keyof VectorStoreStats)[] = [
  'enabled', 'total_connections', 'current_active', 'current_idle', 'available_connections',
  'total_connections_created', 'total_connections_closed', 'total_requests', 'avg_wait_time', 'health_check_failures',
];

function asStats(x: unknown): VectorStoreStats | undefined {
  if (typeof x !== 'object' || x === null) return undefined;
  const o = x as Record<string, unknown>;
  // Accept the design's response ({success, stats}), the driver hook's ({stats, connections}), or the stats object itself.
  if (typeof o.stats === 'object' && o.stats !== null) return asStats(o.stats);
  if (typeof o.enabled !== 'boolean' || typeof o.total_connections !== 'number') return undefined;
  return o as unknown as VectorStoreStats;
}

/**
 * Cluster-wide stats from the balancers' view: one entry per node (or per
 * weaviate pool on a node), in any of the shapes above; entries that are not
 * stats (a node without a weaviate pool, a node that did not answer) are
 * skipped. Counts are summed; `avg_wait_time` is the mean weighted by each
 * node's `total_requests`; `enabled` is true if any node pools.
 */
export function aggregateVectorStoreStats(perNode: readonly unknown[]): VectorStoreStatsResponse {
  const list = perNode.map(asStats).filter((s): s is VectorStoreStats => s !== undefined);
  const sum = (k: keyof VectorStoreStats) => list.reduce((a, s) => a + (Number(s[k]) || 0), 0);
  const requests = sum('total_requests');
  const weighted = list.reduce((a, s) => a + (Number(s.avg_wait_time) || 0) * (Number(s.total_requests) || 0), 0);
  const plain = list.length ? list.reduce((a, s) => a + (Number(s.avg_wait_time) || 0), 0) / list.length : 0;
  const stats: VectorStoreStats = {
    enabled: list.some((s) => s.enabled === true),
    total_connections: sum('total_connections'),
    current_active: sum('current_active'),
    current_idle: sum('current_idle'),
    available_connections: sum('available_connections'),
    total_connections_created: sum('total_connections_created'),
    total_connections_closed: sum('total_connections_closed'),
    total_requests: requests,
    avg_wait_time: round(requests > 0 ? weighted / requests : plain, 6),
    health_check_failures: sum('health_check_failures'),
  };
  return { success: true, stats: Object.fromEntries(KEYS.map((k) => [k, stats[k]])) as unknown as VectorStoreStats };
}

/**
 * The weaviate pools' driver stats in one node's status reply (the
 * `shoal.node.<id>.status` answer: `{pools: {<name>: {kind, ..., driver}}}`);
 * `pool` picks one pool by name.
 */
export function vectorStoreStatsOfNode(status: unknown, pool?: string): WeaviateDriverStats[] {
  const pools = (status as { pools?: Record<string, { kind?: string; driver?: unknown }> } | undefined)?.pools;
  if (!pools || typeof pools !== 'object') return [];
  const out: WeaviateDriverStats[] = [];
  for (const [name, p] of Object.entries(pools)) {
    if (pool && name !== pool) continue;
    const d = p?.driver as WeaviateDriverStats | undefined;
    if (p?.kind === 'weaviate' && d?.kind === 'weaviate' && asStats(d)) out.push(d);
  }
  return out;
}
