import type { ShoalError } from '@shoal/protocol';
import type { Registry } from 'prom-client';
import type { Clock } from './clock.js';
import type { GateProvider } from './turn-gate.js';

/**
 * What a pool needs from a kind of resource. Every method may be slow and may
 * fail; the pool owns timeouts, retries and bookkeeping, the driver only talks
 * to the resource.
 */
export interface Driver<R = unknown> {
  readonly kind: string;
  /** Make one resource ready to lease (spawn a process, open a connection). Honour `signal`. */
  create(ctx: { resourceId: string; signal: AbortSignal }): Promise<R>;
  /** Is it still usable? Called on return (unless validated recently) and by the cleanup. */
  validate(r: R): Promise<boolean>;
  /** Clear per-holder state (a conversation's context) before the next holder. */
  reset(r: R): Promise<void>;
  /**
   * Run one operation. Streamed output goes through `emit` in order; the
   * returned value is the final result. Must stop promptly when `signal` aborts.
   */
  exec(r: R, op: string, args: unknown, ctx: ExecContext): Promise<unknown>;
  /** Free it for good. Must not throw for an already-dead resource. */
  destroy(r: R): Promise<void>;
  /** Current footprint, for resource limits and metrics. */
  usage(r: R): { memoryBytes: number };
  /**
   * How often the pool should validate this driver's idle resources (e.g.
   * Weaviate's health_check_interval), when more often than its cleanup:
   * the pool's cleanup is the one validation timer, drivers keep none.
   */
  readonly validateIntervalMs?: number;
  /**
   * Per-lease options (`acquire {options}`), checked before any resource is
   * taken: throw BAD_REQUEST for anything outside what the pool's config
   * allows. Without this hook, a request with options is refused.
   */
  checkLeaseOptions?(options: unknown): void;
  /**
   * Apply checked per-lease options to a resource before it is handed out;
   * `undefined` restores the pool's defaults (called when it comes back).
   * `keepContext` (a parked resource claimed with its key): keep its context
   * through the change; resolve false if it could not be kept.
   */
  prepare?(r: R, options: Record<string, unknown> | undefined, signal: AbortSignal, keepContext?: boolean): Promise<boolean | void>;
  /**
   * Continue, on a fresh resource, the context of a parked one that is gone
   * (evicted, or its node died), from its `describe()` (claude-cli: resume
   * the session id from a shared session store). False: the context is lost.
   */
  adopt?(r: R, meta: Record<string, unknown>): Promise<boolean>;
  /** Deadline of an operation whose caller gave none (claude-cli: `turn_timeout` for `send`); unset = none. */
  defaultExecTimeoutMs?(op: string): number | undefined;
  /**
   * The driver ends an exec at `ExecContext.timeoutMs` itself, with its own
   * error (claude-cli: TURN_TIMEOUT with what streamed); the pool's timer is
   * then only a backstop, a little later.
   */
  readonly ownsExecDeadline?: boolean;
  /** Operations a client may run one-shot (acquire+exec+release inside the node); unset = all. */
  readonly oneShotOps?: ReadonlySet<string>;
  /** Facts about a resource handed to its holder with the lease (e.g. a session id). */
  describe?(r: R): Record<string, unknown> | undefined;
  /** Extra JSON routes for the node's HTTP server (e.g. /vector-store/pool/stats). */
  routes?(pool: PoolView): Record<string, (q: URLSearchParams) => unknown | Promise<unknown>>;
  /**
   * The backend as the driver last saw it (Weaviate answering isLive/isReady,
   * the CLI able to start): reported to the health-checker's probe. Cheap and
   * synchronous: it reports what is known, it does not ask.
   */
  backend?(): { healthy: boolean; reason?: string };
  /**
   * Is the backend up (Weaviate ready, the CLI logged in)? Cheap, called every
   * health interval; a down answer carries a typed error (WEAVIATE_UNAVAILABLE,
   * POOL_UNAVAILABLE with `details.fix`) that the pool gives callers at once.
   * `ok: undefined`: cannot tell (the pool then tries one create).
   */
  probe?(): Promise<{ ok: boolean | undefined; error?: ShoalError }>;
  /** Driver figures for node status (`pools.<name>.driver`), e.g. the weaviate pool's connection stats. */
  stats?(pool: PoolView): object | undefined;
}

/** What a driver may read of its pool, for its own routes and metrics. */
export interface PoolView {
  readonly name: string;
  numbers(): { total: number; active: number; idle: number; waiting: number; creating?: number; max?: number };
  /** Acquires served and their recent wait (EWMA, ms), for drivers' own stats. */
  readonly meter?: { readonly acquires: number; readonly acquireLatency: { readonly value: number } };
  /** Resource states by id (the id a driver's `create` got), e.g. to tell leased from idle. */
  snapshot?(): { resources: { id: string; status: string }[] };
}

export interface ExecContext {
  emit(event: unknown): void;
  signal: AbortSignal;
  /** The holder's client name (`holder.client` of the lease), e.g. to account cost per client. */
  client?: string;
  /** The exec's deadline in ms from now, if it has one (the pool aborts `signal` then, or a little later with `ownsExecDeadline`). */
  timeoutMs?: number;
}

export interface DriverContext {
  clock: Clock;
  random: () => number;
  /** The node's Prometheus registry, for driver metrics (names in @shoal/protocol Metrics), with `labels` on each. */
  registry?: Registry;
  labels?: Record<string, string>;
  log?: { debug(m: string, f?: Record<string, unknown>): void; info(m: string, f?: Record<string, unknown>): void; warn(m: string, f?: Record<string, unknown>): void; error(m: string, f?: Record<string, unknown>): void };
  /** Driver options from the pool's config, as written. */
  options: Record<string, unknown>;
  poolName: string;
  /** Cluster-wide caps on work at once per key (the node's `shoal_turns` KV bucket); a local stand-in when absent. */
  gates?: GateProvider;
}

export type DriverFactory = (ctx: DriverContext) => Driver;
