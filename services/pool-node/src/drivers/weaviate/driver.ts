import { Metrics, ShoalError } from '@shoal/protocol';
import { Counter, type Registry } from 'prom-client';
import type { Collection, ConsistencyLevel } from 'weaviate-client';
import type { Timer } from '../../clock.js';
import type { Driver, DriverContext, ExecContext, PoolView } from '../../driver.js';
import { closeClient, connect, probe, type Client } from './connection.js';
import { classify, isUnavailable, unavailable } from './errors.js';
import { parseOp } from './ops.js';
import { toWire } from './serialize.js';
import { describeEndpoints, parseSettings } from './settings.js';
import { weaviateReady } from './ready.js';
import { nodeStats, type ConnectionMetrics, type VectorStoreStatsResponse, type WeaviateDriverStats } from '@shoal/protocol';

/**
 * `weaviate`: one resource = one connected weaviate-client v3 client.
 *
 * - create connects (`connectToCustom`: GET /v1/meta twice, a gRPC health
 *   check); a server that cannot be reached fails the create with
 *   WEAVIATE_UNAVAILABLE (retryable), which the pool hands to its waiters and
 *   backs off on, reporting itself unavailable with the reason meanwhile.
 * - exec runs one op of the allow-list (ops.ts) with validated arguments.
 * - health: no timer of its own. `health_check_interval` is the driver's
 *   `validateIntervalMs`: the pool's cleanup validates each idle connection
 *   that often (one validation timer per pool, whatever the driver). validate
 *   probes with isLive() + isReady(), skipped when the connection proved
 *   itself within the interval (a successful op counts). A failed probe is
 *   counted (`health_check_failures`, "Dead connection detected" in the log)
 *   and the pool destroys the connection and creates another (with its
 *   backoff while Weaviate is down). A connection whose client an op lost is
 *   reconnected by the next exec once, else reset refuses it and the pool
 *   replaces it the same way.
 * - while Weaviate is down, ops fail fast: weaviate-client retries a gRPC
 *   call that meets UNAVAILABLE 5 times over ~15 s, so an op still pending
 *   after WATCH_AFTER_MS has Weaviate probed (one shared probe at a time); a
 *   failed probe ends the op with WEAVIATE_UNAVAILABLE at once. Once Weaviate
 *   is known down, each op probes first (shared, ≤1 per PROBE_REUSE_MS) and
 *   fails at once if it still is; the first success clears it.
 * - VECTOR_STORE_USE_POOL=false (`use_pool: false`): the design's legacy
 *   mode. The pool's resources are placeholders holding nothing (no I/O to
 *   create); every exec connects a fresh client, runs the op and closes it.
 *   Same ops, same errors; the pool still bounds concurrency.
 */
export interface Conn {
  /** Sequential per pool on this node: the design's `connection_id`. */
  seq: number;
  resourceId: string;
  client: Client | undefined;
  placeholder: boolean;
  createdAt: number;
  lastUsedAt: number;
  /** Last time it proved alive: a probe, or an op that reached Weaviate. */
  lastCheckedAt: number;
  alive: boolean;
  inFlight: number;
  repairing: Promise<Client> | undefined;
  destroyed: boolean;
  handles: Map<string, Collection>;
}

const MAX_HANDLES = 256;
/** An op pending this long has Weaviate probed (then again each interval). */
const WATCH_AFTER_MS = 500;
/** One reachability probe serves every op asking within this window. */
const PROBE_REUSE_MS = 250;

function counter(registry: Registry | undefined, name: string, help: string, labelNames: string[]): Counter | undefined {
  if (!registry) return undefined;
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

export interface WeaviateDriver extends Driver<Conn> {
  stats(pool: PoolView): WeaviateDriverStats;
}

export function weaviateDriver(ctx: DriverContext): WeaviateDriver {
  const s = parseSettings(ctx.options, ctx.poolName);
  const endpoint = describeEndpoints(s);
  const { clock, log } = ctx;
  const labels = ctx.labels ?? { pool: ctx.poolName };
  const labelNames = Object.keys(labels);
  const m = {
    created: counter(ctx.registry, Metrics.WEAVIATE_CONNECTIONS_CREATED, 'weaviate-client clients connected', labelNames),
    closed: counter(ctx.registry, Metrics.WEAVIATE_CONNECTIONS_CLOSED, 'weaviate-client clients closed', labelNames),
    hcFailures: counter(ctx.registry, Metrics.WEAVIATE_HEALTH_CHECK_FAILURES, 'Failed isLive/isReady probes of weaviate connections', labelNames),
    requests: counter(ctx.registry, Metrics.WEAVIATE_REQUESTS, 'Weaviate operations by op and result', [...labelNames, 'op', 'result']),
  };
  const counters = { created: 0, closed: 0, healthCheckFailures: 0 };
  const conns = new Set<Conn>();
  let seq = 0;
  /** Legacy mode: per-call clients open right now. */
  let openClients = 0;
  const skipWindow = s.healthCheckIntervalMs > 0 ? s.healthCheckIntervalMs : Infinity;

  /** Since when Weaviate is known unreachable (an op, probe or connect said so); undefined = fine. */
  let downSince: number | undefined;
  let lastProbe: { at: number; ok: Promise<boolean> } | undefined;

  async function open(): Promise<Client> {
    let c: Client;
    try {
      c = await connect(s);
    } catch (err) {
      if (isUnavailable(classify(err, 'connect'))) downSince ??= clock.now();
      throw err;
    }
    downSince = undefined;
    counters.created++;
    m.created?.inc(labels);
    return c;
  }

  /** Is Weaviate reachable? One probe shared by everyone asking within PROBE_REUSE_MS. */
  function reachable(c: Client): Promise<boolean> {
    const now = clock.now();
    if (lastProbe && now - lastProbe.at < PROBE_REUSE_MS) return lastProbe.ok;
    const ok = probe(c, s.initTimeoutMs).then((yes) => {
      if (yes) downSince = undefined;
      else downSince ??= clock.now();
      return yes;
    });
    lastProbe = { at: now, ok };
    return ok;
  }

  /**
   * Run an op, but stop waiting if Weaviate goes away under it: after
   * WATCH_AFTER_MS, and every interval after, a failed probe rejects with
   * WEAVIATE_UNAVAILABLE (the client's own call is left to fail on its own).
   */
  function watched<T>(op: string, c: Client, run: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      let timer: Timer | undefined;
      const finish = (fn: () => void) => { if (done) return; done = true; clock.clearTimeout(timer); fn(); };
      const tick = () => {
        timer = clock.setTimeout(() => {
          reachable(c).then((ok) => {
            if (done) return;
            if (ok) tick();
            else finish(() => reject(unavailable(op, 'it stopped answering while the operation was pending (health probe failed)', { endpoint })));
          }, () => tick());
        }, WATCH_AFTER_MS);
      };
      tick();
      run.then((v) => finish(() => resolve(v)), (e) => finish(() => reject(e)));
    });
  }

  async function shut(c: Client): Promise<void> {
    await closeClient(c);
    counters.closed++;
    m.closed?.inc(labels);
  }

  /** Close a connection's client after a failure; the Conn stays, without a client, until repaired or destroyed. */
  async function breakConn(conn: Conn): Promise<void> {
    const c = conn.client;
    conn.client = undefined;
    conn.alive = false;
    conn.handles.clear();
    if (c) await shut(c);
  }

  /** Connect a new client into `conn` (one attempt at a time). */
  function repair(conn: Conn): Promise<Client> {
    if (conn.repairing) return conn.repairing;
    const p = (async () => {
      try {
        const c = await open();
        if (conn.destroyed) {
          await shut(c);
          throw unavailable('reconnect', 'the connection was destroyed meanwhile');
        }
        conn.client = c;
        conn.alive = true;
        // A new client in the same slot: the design's per-connection age starts again (the pool's lifetime does not).
        conn.createdAt = conn.lastCheckedAt = clock.now();
        log?.info('weaviate connection replaced', { pool: ctx.poolName, connection: conn.seq, endpoint });
        return c;
      } finally {
        conn.repairing = undefined;
      }
    })();
    conn.repairing = p;
    return p;
  }

  /** One isLive+isReady probe; a failure is counted and logged. */
  async function check(conn: Conn, c: Client): Promise<boolean> {
    const ok = await probe(c, s.initTimeoutMs);
    conn.lastCheckedAt = clock.now();
    conn.alive = ok;
    if (ok) downSince = undefined;
    else downSince ??= clock.now();
    if (!ok) {
      counters.healthCheckFailures++;
      m.hcFailures?.inc(labels);
      log?.warn('Dead connection detected', { pool: ctx.poolName, connection: conn.seq, endpoint });
    }
    return ok;
  }

  function handle(conn: Conn | undefined, c: Client, name: string, tenant?: string, cl?: ConsistencyLevel): Collection {
    const key = `${name}\u0000${tenant ?? ''}\u0000${cl ?? ''}`;
    let h = conn?.handles.get(key);
    if (h) return h;
    h = c.collections.get(name);
    if (tenant) h = h.withTenant(tenant);
    if (cl) h = h.withConsistency(cl);
    if (conn) {
      if (conn.handles.size >= MAX_HANDLES) conn.handles.clear();
      conn.handles.set(key, h);
    }
    return h;
  }

  function connections(pool: PoolView): ConnectionMetrics[] {
    const now = clock.now();
    const states = new Map((pool.snapshot?.().resources ?? []).map((r) => [r.id, r.status]));
    return [...conns].filter((c) => !c.placeholder).map((c) => {
      const st = states.get(c.resourceId);
      return {
        id: c.seq,
        age: (now - c.createdAt) / 1000,
        last_used: (now - c.lastUsedAt) / 1000,
        in_use: st ? st === 'active' || st === 'returning' : c.inFlight > 0,
        alive: c.alive && c.client !== undefined,
      };
    });
  }

  function stats(pool: PoolView): WeaviateDriverStats {
    const n = pool.numbers();
    const figures = { total: n.total, active: n.active, idle: n.idle, acquires: pool.meter?.acquires ?? 0, acquireLatency: pool.meter?.acquireLatency.value ?? 0 };
    return { kind: 'weaviate', endpoint, stats: nodeStats(s.usePool, figures, counters, openClients), connections: connections(pool) };
  }

  return {
    kind: 'weaviate',
    stats,
    // The pool validates idle connections this often (VECTOR_STORE_HEALTH_CHECK_INTERVAL); placeholders need none.
    ...(s.usePool && Number.isFinite(skipWindow) ? { validateIntervalMs: s.healthCheckIntervalMs } : {}),

    backend() {
      return downSince === undefined ? { healthy: true } : { healthy: false, reason: `Weaviate at ${endpoint} unreachable since ${new Date(downSince).toISOString()}` };
    },

    async probe() {
      const r = await weaviateReady(s, endpoint);
      if (r.ok) downSince = undefined;
      else downSince ??= clock.now();
      return r;
    },

    async create({ resourceId, signal }) {
      const now = clock.now();
      const conn: Conn = {
        seq: ++seq, resourceId, client: undefined, placeholder: !s.usePool, createdAt: now, lastUsedAt: now, lastCheckedAt: now,
        alive: true, inFlight: 0, repairing: undefined, destroyed: false, handles: new Map(),
      };
      if (s.usePool) {
        const c = await open();
        if (signal.aborted) {
          await shut(c);
          throw unavailable('connect', 'create was cancelled');
        }
        conn.client = c;
      }
      conns.add(conn);
      return conn;
    },

    async validate(conn) {
      if (conn.destroyed) return false;
      if (conn.placeholder) return true;
      if (!conn.client) return false;
      if (clock.now() - conn.lastCheckedAt < skipWindow) return true;
      return check(conn, conn.client);
    },

    async reset(conn) {
      // Nothing is held per holder; a connection that lost its client is not handed on.
      if (!conn.placeholder && !conn.client) throw unavailable('reset', 'the connection is broken');
    },

    async exec(conn, op, args, { signal }: ExecContext) {
      let parsed;
      try {
        parsed = parseOp(op, args);
      } catch (err) {
        m.requests?.inc({ ...labels, op: 'invalid', result: 'bad_request' });
        throw err;
      }
      const { def, args: a } = parsed;
      conn.inFlight++;
      conn.lastUsedAt = clock.now();
      let client: Client | undefined;
      try {
        try {
          if (conn.placeholder) {
            client = await open();
            openClients++;
          } else {
            client = conn.client ?? await repair(conn);
          }
        } catch (err) {
          const e = classify(err, `connect to ${endpoint}`, endpoint);
          throw new ShoalError(e.code, `${op}: ${e.message}`, { details: e.details });
        }
        if (signal.aborted) throw signal.reason;
        const c = client;
        // Known down: fail fast rather than sit through the client's retries.
        if (downSince !== undefined && !conn.placeholder && !(await reachable(c))) {
          throw unavailable(op, `unreachable since ${new Date(downSince).toISOString()}`, { endpoint });
        }
        const run = def.run({ client: c, collection: (name, tenant, cl) => handle(conn.placeholder ? undefined : conn, c, name, tenant, cl) }, a);
        const out = conn.placeholder ? await run : await watched(op, c, run);
        downSince = undefined;
        if (!conn.placeholder) { conn.lastCheckedAt = clock.now(); conn.alive = true; }
        m.requests?.inc({ ...labels, op, result: 'success' });
        return toWire(out);
      } catch (err) {
        const e = classify(err, op, endpoint);
        m.requests?.inc({ ...labels, op, result: isUnavailable(e) ? 'unavailable' : e.code === 'BAD_REQUEST' ? 'bad_request' : 'error' });
        if (isUnavailable(e)) {
          downSince ??= clock.now();
          if (!conn.placeholder && client && conn.client === client) await breakConn(conn);
        }
        throw e;
      } finally {
        conn.inFlight--;
        if (conn.placeholder && client) {
          openClients--;
          await shut(client);
        }
      }
    },

    async destroy(conn) {
      conn.destroyed = true;
      conns.delete(conn);
      const c = conn.client;
      conn.client = undefined;
      conn.handles.clear();
      if (c) await shut(c);
    },

    usage() {
      // The client's sockets are shared process-wide (see connection.ts): nothing per connection to count against limits.
      return { memoryBytes: 0 };
    },

    routes(pool) {
      return {
        '/vector-store/pool/stats': (): VectorStoreStatsResponse => ({ success: true, stats: stats(pool).stats }),
        '/vector-store/pool/connections': () => ({ success: true, pool: pool.name, connections: connections(pool) }),
      };
    },
  };
}
