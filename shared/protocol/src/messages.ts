import { ErrorCodes, ShoalError, type WireError } from './errors.js';
import { PROTOCOL_VERSION } from './version.js';
import { any, bool, int, num, obj, oneOf, optional, str, type Infer } from './validate.js';
import { decode } from './codec.js';

/** Longest acquire or exec deadline a caller may ask for: one hour. */
export const MAX_TIMEOUT_MS = 3_600_000;
/** Longest lease TTL a caller may ask for (renew extends it). */
export const MAX_TTL_MS = 86_400_000;

const name = str({ min: 1, max: 64, pattern: /^[A-Za-z0-9_-]+$/ });
const id = str({ min: 1, max: 64 });
const timeoutMs = int({ min: 1, max: MAX_TIMEOUT_MS });
/** A parking key: a subject-safe token chosen by the client (a conversation id, a user id). */
const parkKey = str({ min: 1, max: 128, pattern: /^[A-Za-z0-9_=-]+$/ });

/** Who holds a lease, for leak reports. */
const holderShape = {
  client: optional(str({ max: 128 })),
  host: optional(str({ max: 255 })),
  pid: optional(int({ min: 0 })),
};
const holder = obj(holderShape);
export type Holder = Infer<typeof holderShape>;

const acquireShape = {
  pool: name,
  /** Absent: the pool's `acquire_timeout` (the balancer's config for the pool, else the node's). */
  timeoutMs: optional(timeoutMs),
  /** Higher is served first; FIFO within one priority. */
  priority: optional(int({ min: -1000, max: 1000 })),
  ttlMs: optional(int({ min: 1, max: MAX_TTL_MS })),
  holder: optional(holder),
  /**
   * Per-lease options for the driver, within what the pool's config allows
   * (claude-cli: `lease_options`), e.g. `{ model: 'haiku' }`. Anything else is
   * BAD_REQUEST before a resource is taken.
   */
  options: optional(any()),
  /**
   * Get the resource parked under this key (its context intact) if it lives;
   * else a fresh one, resumed from the shared store where the driver can
   * (claude-cli `--resume`). The lease's `park` says which.
   */
  park: optional(parkKey),
  /**
   * With `park`, on a node asked directly: only the resource parked (or being
   * returned to park, waited for) here under the key; else NOT_PARKED,
   * nothing taken — at once while the node is out of rotation (operator
   * weight 0, an unhealthy verdict). The SDK's first try at the node where it
   * parked the key; balancers drop it from clients' requests.
   */
  onlyParked: optional(bool()),
};
const acquire = obj(acquireShape);
export type AcquireRequest = Infer<typeof acquireShape>;

/** Longest keep-alive period a caller may ask for. */
export const MAX_KEEPALIVE_MS = 60_000;
const keepAliveMs = optional(int({ min: 100, max: MAX_KEEPALIVE_MS }));

const execShape = {
  ...acquireShape,
  op: str({ min: 1, max: 128 }),
  args: optional(any()),
  /**
   * The operation's own deadline, counted once the node holds a resource
   * (`timeoutMs` then bounds only the wait for one). Unset: the pool's
   * per-op default (e.g. claude-cli `turn_timeout`), else what is left of
   * `timeoutMs`.
   */
  execTimeoutMs: optional(timeoutMs),
  /**
   * Ask the node for an empty stream message (`{seq, events: []}`) when it
   * starts the operation and whenever nothing was sent for this long, so the
   * caller can wait on silence instead of a deadline it does not know.
   */
  keepAliveMs,
  /**
   * Set by a balancer: the caller's inbox. The node answers the balancer
   * `{accepted: true}` once it holds a resource (or a refusal the balancer can
   * retry elsewhere), then streams events and the result to `replyTo`.
   */
  replyTo: optional(str({ min: 1, max: 255, pattern: /^[^\s*>]+$/ })),
};
const exec = obj(execShape);
export type ExecRequest = Infer<typeof execShape>;

/**
 * The per-lease secret the grant carried (see LeaseSecrets). Every lease
 * operation needs it; a missing or wrong one is answered as an unknown lease.
 */
const secret = optional(str({ max: 64 }));

const leaseExecShape = {
  leaseId: id,
  secret,
  op: str({ min: 1, max: 128 }),
  args: optional(any()),
  /** Unset: the pool's per-op default (claude-cli `turn_timeout`), else none. */
  timeoutMs: optional(timeoutMs),
  keepAliveMs,
};
const leaseExec = obj(leaseExecShape);
export type LeaseExecRequest = Infer<typeof leaseExecShape>;

const renewShape = { leaseId: id, secret, ttlMs: optional(int({ min: 1, max: MAX_TTL_MS })) };
const renew = obj(renewShape);
export type RenewRequest = Infer<typeof renewShape>;

const releaseShape = {
  leaseId: id,
  secret,
  reset: optional(bool()),
  destroy: optional(bool()),
  /** Keep the resource with its context under this key (not reset) for a later acquire with `park` (pool `max_parked`, `park_ttl`). */
  park: optional(parkKey),
};
const release = obj(releaseShape);
export type ReleaseRequest = Infer<typeof releaseShape>;

const scaleShape = {
  pool: name,
  op: oneOf(['up', 'down', 'target'] as const),
  n: int({ min: 0, max: 100_000 }),
  /** Set by the autoscaler leader: its term. A node refuses an epoch older than the newest it has seen (STALE_EPOCH). */
  epoch: optional(int({ min: 0 })),
};
const scale = obj(scaleShape);
export type ScaleRequest = Infer<typeof scaleShape>;

const drainShape = { graceMs: optional(int({ min: 0, max: MAX_TIMEOUT_MS })) };
const drain = obj(drainShape);
export type DrainRequest = Infer<typeof drainShape>;

/** Status paging (balancers): a page of at most STATUS_MAX_LIMIT nodes, by node id after `cursor`, filtered by pool or node. */
export const STATUS_DEFAULT_LIMIT = 100;
export const STATUS_MAX_LIMIT = 1000;
const statusShape = {
  leases: optional(bool()),
  pool: optional(name),
  node: optional(name),
  limit: optional(int({ min: 0, max: STATUS_MAX_LIMIT })),
  cursor: optional(name),
};
const status = obj(statusShape);
export type StatusRequest = Infer<typeof statusShape>;

/** Who made an operator change, as the CLI says (`user@host`); kept with the setting for `shoal status`. */
const by = optional(str({ max: 128 }));

const strategyShape = {
  by,
  strategy: oneOf(['round_robin', 'least_connections', 'weighted_round_robin', 'performance_based', 'p2c'] as const),
  performanceWeights: optional(obj({ latency: num({ min: 0 }), throughput: num({ min: 0 }), errorRate: num({ min: 0 }), resource: num({ min: 0 }) })),
};
const strategy = obj(strategyShape);
export type StrategyRequest = Infer<typeof strategyShape>;

// The node id becomes a KV key and a subject token: no dots, spaces or wildcards.
const weightShape = { nodeId: name, weight: num({ min: 0, max: 1000 }), by };
const weight = obj(weightShape);
export type WeightRequest = Infer<typeof weightShape>;

/** Back to the config: one runtime setting (`strategy`, `weight.<node>`), or every one when `key` is absent. */
const settingsResetShape = { key: optional(str({ min: 1, max: 128, pattern: /^[A-Za-z0-9_.-]+$/ })), by };
const settingsReset = obj(settingsResetShape);
export type SettingsResetRequest = Infer<typeof settingsResetShape>;

/** Validators by message kind. Each returns the typed message or throws BAD_REQUEST. */
export const validators = {
  acquire,
  exec,
  leaseExec,
  renew,
  release,
  scale,
  drain,
  status,
  strategy,
  weight,
  settingsReset,
} as const;
export type MessageKind = keyof typeof validators;
export type MessageOf<K extends MessageKind> = ReturnType<(typeof validators)[K]>;

/** Check the protocol version of a decoded message. */
export function checkVersion(m: Record<string, unknown>): void {
  if (m.v === PROTOCOL_VERSION) return;
  if (m.v === undefined) throw new ShoalError(ErrorCodes.BAD_REQUEST, `field v: expected protocol version ${PROTOCOL_VERSION}, got missing`, { details: { field: 'v' } });
  if (typeof m.v !== 'number') throw new ShoalError(ErrorCodes.BAD_REQUEST, `field v: expected protocol version ${PROTOCOL_VERSION}, got a ${typeof m.v}`, { details: { field: 'v' } });
  throw new ShoalError(ErrorCodes.VERSION_MISMATCH, `protocol version ${m.v} is not supported (this peer speaks ${PROTOCOL_VERSION})`);
}

/** Decode, check version and validate in one step: the only way a handler reads a request. */
export function parse<K extends MessageKind>(kind: K, data: Uint8Array): MessageOf<K> {
  const m = decode(data);
  checkVersion(m);
  return validators[kind](m, '') as MessageOf<K>;
}

// ---- replies -------------------------------------------------------------

/** A granted lease. `expiresAt` is the node's clock (epoch ms); `ttlMs` is what clients should rely on. */
export interface Lease {
  leaseId: string;
  nodeId: string;
  pool: string;
  resourceId: string;
  expiresAt: number;
  ttlMs: number;
  reused: boolean;
  /**
   * Proof of holding: every lease operation (exec, renew, release) must send
   * it back. Only the holder receives it; set by the node on grant.
   */
  secret?: string;
  /** What the driver tells about the resource, e.g. the Claude CLI's `session_id`. */
  meta?: Record<string, unknown>;
  /**
   * For an acquire with `park`: `hit` (the parked resource, context intact),
   * `resumed` (it was gone; a fresh one continues it from the shared store),
   * or `gone` (a fresh one: the context is lost).
   */
  park?: 'hit' | 'resumed' | 'gone';
  /** The granting node's incarnation (its heartbeats' `startedAt`): another value means it restarted and the lease is gone. */
  nodeStartedAt?: number;
}

// ---- lease events (issue 9) ------------------------------------------------

/** Why a holder lost its lease. */
export type LeaseLostReason = 'expired' | 'revoked' | 'drained' | 'node_gone' | 'node_restarted';

/** On `<prefix>.events.lease.<nodeId>`: leases the node ended without their holder asking. */
export interface LeaseEvent {
  v: typeof PROTOCOL_VERSION;
  nodeId: string;
  /** The node's incarnation. */
  startedAt: number;
  at: number;
  lost: { leaseId: string; reason: LeaseLostReason }[];
}

/** On `<prefix>.events.node.<nodeId>`: the node is gone (or restarted as `startedAt`); every lease of an earlier incarnation is lost. */
export interface NodeEvent {
  v: typeof PROTOCOL_VERSION;
  nodeId: string;
  gone: boolean;
  /** The incarnation that is gone, when known. */
  startedAt?: number;
  reason: string;
  at: number;
  /** Who says so (a health-checker or balancer id). */
  by?: string;
}

export interface OkReply<T = Record<string, unknown>> {
  v: typeof PROTOCOL_VERSION;
  ok: true;
  data: T;
}
export interface ErrReply {
  v: typeof PROTOCOL_VERSION;
  ok: false;
  error: WireError;
}
export type Reply<T = Record<string, unknown>> = OkReply<T> | ErrReply;

/**
 * One message of a streamed exec: one `event`, or several in `events` (sent
 * together when emitted together); `seq` is the index of the message's first
 * event. The last message has `seq: -1`, `done: true` and the operation's
 * `result` (or is an ErrReply).
 */
export interface StreamEvent {
  v: typeof PROTOCOL_VERSION;
  ok: true;
  seq: number;
  event?: unknown;
  events?: unknown[];
  done?: boolean;
  result?: unknown;
  /** On the last message of a one-shot with `park` that parked its resource: the node it is parked on. */
  nodeId?: string;
}

export const ok = <T>(data: T): OkReply<T> => ({ v: PROTOCOL_VERSION, ok: true, data });
export const fail = (err: unknown): ErrReply => ({ v: PROTOCOL_VERSION, ok: false, error: ShoalError.from(err).toWire() });

/** Read a reply; an error reply becomes a thrown ShoalError. */
export function readReply<T>(data: Uint8Array): T {
  const m = decode(data);
  checkVersion(m);
  if (m.ok === true) return m.data as T;
  if (m.ok === false && m.error && typeof m.error === 'object') throw ShoalError.fromWire(m.error as WireError);
  throw new ShoalError(ErrorCodes.BAD_REQUEST, 'malformed reply: neither ok nor error');
}

/** Read one message of a streamed exec: an event, the final result, or a thrown error. */
export function readStream(data: Uint8Array): StreamEvent {
  const m = decode(data);
  checkVersion(m);
  if (m.ok === false && m.error && typeof m.error === 'object') throw ShoalError.fromWire(m.error as WireError);
  if (m.ok !== true || typeof m.seq !== 'number') throw new ShoalError(ErrorCodes.BAD_REQUEST, 'malformed stream message');
  return m as unknown as StreamEvent;
}

// ---- heartbeat -----------------------------------------------------------

/** What a node says about one of its pools every heartbeat. */
export interface PoolStats {
  kind: string;
  total: number;
  idle: number;
  active: number;
  creating: number;
  waiting: number;
  min: number;
  max: number;
  target: number;
  maxWaiting: number;
  weight: number;
  /** EWMA of acquire latency (ms) as the node sees it. */
  latencyMs: number;
  /** EWMA of exec latency (ms). */
  execLatencyMs: number;
  /** Share of failed operations over the last window, 0..1. */
  errorRate: number;
  /** Acquires per second over the last window. */
  requestRate: number;
  reuseRate: number;
  memoryBytes: number;
  /** EWMA of a successful create (ms); 0 before the first. The autoscaler's prediction looks this far ahead. */
  createLatencyMs?: number;
  /** False when the pool cannot make resources (creates failing, nothing usable); `reason` says why. */
  available: boolean;
  reason?: string;
  /** The pool's `load_balancing.health_check_interval` (ms): health-checkers probe the node this often unless `health_check.interval` is set. */
  healthCheckIntervalMs?: number;
  /** The pool's `load_balancing.circuit_breaker_enabled`; false = balancers place on this node whatever its circuit says. */
  circuitBreaker?: boolean;
  /**
   * Hashes (`parkKeyHash`) of the keys of resources parked on this node
   * (release `park`), newest first, as many as fit the heartbeat's byte
   * budget: balancers route an acquire with the key here. Named apart from
   * the `parked` of nodes before it (raw keys): a balancer routes by one
   * field only, so mixed versions place those keys by strategy, never by
   * a key taken for a hash.
   */
  parkedHashes?: string[];
  /** Parked here but left out of `parkedHashes` (the budget was spent): balancers place acquires with these keys by strategy. */
  parkedOmitted?: number;
  /** In balancer status replies instead of `parkedHashes`: how many are parked. */
  parkedCount?: number;
}

export interface Heartbeat {
  v: typeof PROTOCOL_VERSION;
  nodeId: string;
  seq: number;
  startedAt: number;
  /**
   * Random per process: a restart is a new instance, whatever the clocks say
   * (startedAt alone let one forged heartbeat with a future time hide a node).
   */
  instanceId?: string;
  intervalMs: number;
  draining: boolean;
  host: string;
  pid: number;
  /** Requests being processed right now (for max_concurrent_requests). */
  inFlight: number;
  maxConcurrent: number;
  /** Process CPU share 0..1 (of one core) over the last interval. */
  cpu: number;
  memory: { rss: number; heapUsed: number };
  pools: Record<string, PoolStats>;
}

const heartbeatCheck = obj({
  nodeId: id,
  seq: int({ min: 0 }),
  startedAt: num(),
  instanceId: optional(str({ min: 1, max: 64 })),
  intervalMs: int({ min: 1 }),
  draining: bool(),
  host: str({ max: 255 }),
  pid: int({ min: 0 }),
  inFlight: int({ min: 0 }),
  maxConcurrent: int({ min: 0 }),
  cpu: num({ min: 0 }),
  memory: obj({ rss: num({ min: 0 }), heapUsed: num({ min: 0 }) }),
  pools: (v, p) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ShoalError(ErrorCodes.BAD_REQUEST, `field ${p}: expected a map`);
    return v as Record<string, PoolStats>;
  },
});

export function parseHeartbeat(data: Uint8Array): Heartbeat {
  const m = decode(data);
  checkVersion(m);
  heartbeatCheck(m, '');
  return m as unknown as Heartbeat;
}

/** One runtime setting in a balancer's status (`settings.values`): its value now and where that came from. */
export interface SettingRow {
  key: string;
  pool?: string;
  nodeId?: string;
  value: unknown;
  /** `runtime` (an operator's override, with `by` and `at`), or the config layer: `default`, `file …`, `env …`. */
  source: string;
  by?: string;
  at?: number;
  revision?: number;
}
