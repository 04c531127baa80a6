import type { Route } from '@shoal/runtime';
import type { PoolNode } from './node.js';

/** Routes a driver adds (e.g. the Weaviate pool's /vector-store/pool/stats); the first pool of a kind wins a path. */
function driverRoutes(node: PoolNode): Record<string, Route> {
  const out: Record<string, Route> = {};
  for (const [name, d] of node.drivers) {
    const pool = node.pools.get(name)!;
    for (const [path, route] of Object.entries(d.routes?.(pool) ?? {})) if (!out[path]) out[path] = route;
  }
  return out;
}

/** The design documents' HTTP paths, served by each node for its own shard. */
export function statusRoutes(node: PoolNode): Record<string, Route> {
  return {
    '/api/v1/session-pool/status': () => node.status(false),
    '/api/v1/session-pool/sessions': (q) => {
      const pool = q.get('pool');
      const sessions = [];
      for (const p of node.pools.values()) {
        if (pool && p.name !== pool) continue;
        const snap = p.snapshot();
        for (const r of snap.resources) sessions.push({ ...r, pool: p.name, kind: p.kind });
      }
      return { nodeId: node.nodeId, sessions };
    },
    '/api/v1/session-pool/leases': () => {
      const leases = [];
      for (const p of node.pools.values()) for (const l of p.snapshot().leases) leases.push({ ...l, pool: p.name });
      return { nodeId: node.nodeId, leases };
    },
    '/api/v1/metrics': () => undefined,
    ...driverRoutes(node),
  };
}
