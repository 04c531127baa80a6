import { STATUS_DEFAULT_LIMIT, STATUS_MAX_LIMIT } from '@shoal/protocol';
import type { Tier } from './candidate-index.js';

/** What a status request may ask for (all optional). */
export interface StatusQuery {
  /** Only nodes serving this pool. */
  pool?: string;
  /** Only this node. */
  node?: string;
  /** Nodes per page; default 100, at most 1000; 0 = the summary only. */
  limit?: number;
  /** The `next` of the previous page: nodes whose id sorts after it. */
  cursor?: string;
}

/** One pool over every node that serves it. */
export interface PoolSummary {
  nodes: number;
  /** Alive, not draining, not unhealthy. */
  eligible: number;
  total: number;
  idle: number;
  active: number;
  waiting: number;
  creating: number;
  max: number;
  /** The placement index: nodes with a spare idle resource, with room to create one, full. */
  placeable: { idle: number; room: number; full: number };
}

export interface StatusSummary {
  nodes: number;
  states: Record<string, number>;
  draining: number;
  unhealthy: number;
  circuitOpen: number;
  pools: Record<string, PoolSummary>;
}

export interface PageInfo {
  limit: number;
  returned: number;
  /** Nodes matching the filters, all pages together. */
  matched: number;
  /** Cursor of the next page; null on the last one. */
  next: string | null;
}

/** The fields of a node the summary and the page read. */
export interface NodeLike {
  nodeId: string;
  state: string;
  eligible: boolean;
  draining: boolean;
  unhealthy: boolean;
  circuit: string;
  pools: Record<string, { total?: number; idle?: number; active?: number; waiting?: number; creating?: number; max?: number } | undefined>;
}

const n = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : 0);

/** Totals over every node: the part of a status that stays the same size whatever the number of nodes (per pool). */
export function summarize(nodes: Iterable<NodeLike>, tiers: (pool: string) => Map<string, Tier>): StatusSummary {
  const out: StatusSummary = { nodes: 0, states: {}, draining: 0, unhealthy: 0, circuitOpen: 0, pools: {} };
  for (const v of nodes) {
    out.nodes++;
    out.states[v.state] = (out.states[v.state] ?? 0) + 1;
    if (v.draining) out.draining++;
    if (v.unhealthy) out.unhealthy++;
    if (v.circuit !== 'closed') out.circuitOpen++;
    for (const [pool, st] of Object.entries(v.pools)) {
      const p = (out.pools[pool] ??= { nodes: 0, eligible: 0, total: 0, idle: 0, active: 0, waiting: 0, creating: 0, max: 0, placeable: { idle: 0, room: 0, full: 0 } });
      p.nodes++;
      if (v.eligible) p.eligible++;
      p.total += n(st?.total);
      p.idle += n(st?.idle);
      p.active += n(st?.active);
      p.waiting += n(st?.waiting);
      p.creating += n(st?.creating);
      p.max += n(st?.max);
    }
  }
  for (const [pool, p] of Object.entries(out.pools)) {
    for (const t of tiers(pool).values()) {
      if (t === 0) p.placeable.idle++;
      else if (t === 1) p.placeable.room++;
      else p.placeable.full++;
    }
  }
  return out;
}

/** The page of nodes a query asks for, in node id order. */
export function page<T extends NodeLike>(nodes: readonly T[], q: StatusQuery): { nodes: T[]; page: PageInfo } {
  const limit = Math.min(STATUS_MAX_LIMIT, Math.max(0, q.limit ?? STATUS_DEFAULT_LIMIT));
  const matched = nodes.filter((v) => (q.node === undefined || v.nodeId === q.node) && (q.pool === undefined || Object.hasOwn(v.pools, q.pool)));
  matched.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  const after = q.cursor;
  let start = 0;
  if (after !== undefined) {
    // First id after the cursor (binary search: ids are sorted).
    let lo = 0;
    let hi = matched.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (matched[mid]!.nodeId <= after) lo = mid + 1;
      else hi = mid;
    }
    start = lo;
  }
  const slice = matched.slice(start, start + limit);
  const more = start + limit < matched.length && slice.length > 0;
  return { nodes: slice, page: { limit, returned: slice.length, matched: matched.length, next: more ? slice.at(-1)!.nodeId : null } };
}
