/** Every error that crosses the wire carries one of these codes. */
export const ErrorCodes = {
  /** The acquire deadline passed while waiting for a resource. */
  POOL_TIMEOUT: 'POOL_TIMEOUT',
  /** The wait queue is full (`max_waiting_clients`). */
  POOL_EXHAUSTED: 'POOL_EXHAUSTED',
  /** Too many requests in flight on the node (`max_concurrent_requests`). */
  POOL_BUSY: 'POOL_BUSY',
  POOL_NOT_FOUND: 'POOL_NOT_FOUND',
  LEASE_NOT_FOUND: 'LEASE_NOT_FOUND',
  LEASE_EXPIRED: 'LEASE_EXPIRED',
  NODE_DRAINING: 'NODE_DRAINING',
  /** Malformed message, missing or mistyped field, oversized payload. */
  BAD_REQUEST: 'BAD_REQUEST',
  VERSION_MISMATCH: 'VERSION_MISMATCH',
  /** The driver failed: create, exec, validate. `details.cause` has its message. */
  DRIVER_ERROR: 'DRIVER_ERROR',
  UNSUPPORTED_OP: 'UNSUPPORTED_OP',
  /** A session is already running a turn (claude-cli). */
  SESSION_BUSY: 'SESSION_BUSY',
  /**
   * A session stopped answering (claude-cli: no output for `stall_timeout`
   * during a turn, or a control request unanswered). `details.retryable` is
   * true (the session is interrupted or replaced; retry on a fresh one);
   * `details.lastLines` has the last lines it printed.
   */
  SESSION_STALLED: 'SESSION_STALLED',
  /**
   * A turn ran past its own deadline (the exec's `timeoutMs`, or the pool's
   * `turn_timeout`) and was interrupted. `details.partialText` and
   * `details.events` say what streamed before; not retryable as is.
   */
  TURN_TIMEOUT: 'TURN_TIMEOUT',
  /** The balancer knows no eligible node for the pool. */
  NO_NODES: 'NO_NODES',
  /** The Weaviate server cannot be reached (weaviate driver). `details.retryable` says whether a retry can help. */
  WEAVIATE_UNAVAILABLE: 'WEAVIATE_UNAVAILABLE',
  /**
   * A pool's backend is known down (its creates fail, its probe fails) or the
   * pool cannot work (a CLI that cannot start or is not logged in): answered
   * at once, never after a wait. `details.backend`, `details.cause`, `details.fix`.
   */
  POOL_UNAVAILABLE: 'POOL_UNAVAILABLE',
  /** The lease is gone: its node died, restarted, drained past its grace, or reclaimed it. Acquire again. */
  LEASE_LOST: 'LEASE_LOST',
  /** The caller gave up (abort signal) or the lease was revoked mid-operation. */
  CANCELLED: 'CANCELLED',
  /** A request to a peer got no responders or no answer in time. */
  UNAVAILABLE: 'UNAVAILABLE',
  /**
   * An acquire with `onlyParked` (the SDK's first try at the node it parked
   * the key on) found no resource parked, or returning to park, under the key
   * there, or that node is out of rotation (`details.reason` `weight_0` or
   * `unhealthy`): ask again through a balancer. Nothing was taken.
   */
  NOT_PARKED: 'NOT_PARKED',
  /** A scale command from an autoscaler leadership term older than one the node has seen: refused, not retryable. */
  STALE_EPOCH: 'STALE_EPOCH',
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** The pool's numbers at the moment of an error, as HikariCP prints them. */
export interface PoolNumbers {
  total: number;
  active: number;
  idle: number;
  waiting: number;
  creating?: number;
  max?: number;
}

export interface WireError {
  code: ErrorCode;
  message: string;
  /** Whether a retry (later, or on another node) can help. */
  retryable?: boolean;
  pool?: PoolNumbers;
  details?: Record<string, unknown>;
}

/**
 * The one error type of Shoal. `code` is stable and machine-readable, the
 * message is for people. Retryable codes are those where another node (or a
 * later attempt) may succeed.
 */
export class ShoalError extends Error {
  readonly code: ErrorCode;
  readonly pool?: PoolNumbers;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, extra: { pool?: PoolNumbers; details?: Record<string, unknown> } = {}) {
    super(message);
    this.name = 'ShoalError';
    this.code = code;
    if (extra.pool) this.pool = extra.pool;
    if (extra.details) this.details = extra.details;
  }

  /** Whether a retry (later, or on another node) can help: `details.retryable` when the sender said, else by code. */
  get retryable(): boolean {
    const r = this.details?.retryable;
    return typeof r === 'boolean' ? r : RETRYABLE_CODES.has(this.code);
  }

  toWire(): WireError {
    const w: WireError = { code: this.code, message: this.message, retryable: this.retryable };
    if (this.pool) w.pool = this.pool;
    if (this.details) w.details = this.details;
    return w;
  }

  static fromWire(w: WireError): ShoalError {
    // A sender's own verdict on retrying travels in details, so that it survives re-sending.
    const details = typeof w.retryable === 'boolean' && w.retryable !== RETRYABLE_CODES.has(w.code) ? { ...w.details, retryable: w.retryable } : w.details;
    return new ShoalError(w.code, w.message, { pool: w.pool, details });
  }

  /** Wrap anything thrown into a ShoalError without losing a code it already has. */
  static from(err: unknown, fallback: ErrorCode = ErrorCodes.INTERNAL): ShoalError {
    if (err instanceof ShoalError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new ShoalError(fallback, message);
  }
}

/** Codes where a later try may succeed (the default of `ShoalError.retryable`). */
export const RETRYABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCodes.POOL_TIMEOUT,
  ErrorCodes.POOL_EXHAUSTED,
  ErrorCodes.POOL_BUSY,
  ErrorCodes.NODE_DRAINING,
  ErrorCodes.NO_NODES,
  ErrorCodes.UNAVAILABLE,
  ErrorCodes.WEAVIATE_UNAVAILABLE,
  ErrorCodes.POOL_UNAVAILABLE,
  ErrorCodes.LEASE_LOST,
  // From the node a key was parked on: nothing ran; the balancers place it anew.
  ErrorCodes.NOT_PARKED,
]);

/** Codes meaning "this pool's backend is down here": at once, not after a wait. */
export const BACKEND_DOWN: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCodes.WEAVIATE_UNAVAILABLE,
  ErrorCodes.POOL_UNAVAILABLE,
]);

/** Codes for which a balancer may try another node. */
export const RETRYABLE_ON_OTHER_NODE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCodes.NODE_DRAINING,
  ErrorCodes.POOL_BUSY,
  ErrorCodes.POOL_EXHAUSTED,
  ErrorCodes.UNAVAILABLE,
  ErrorCodes.POOL_NOT_FOUND,
  ErrorCodes.WEAVIATE_UNAVAILABLE,
  ErrorCodes.POOL_UNAVAILABLE,
]);

/** Human one-liner with the pool's numbers, e.g. for POOL_TIMEOUT. */
export function describePool(name: string, n: PoolNumbers): string {
  return `pool ${name} (total=${n.total}, active=${n.active}, idle=${n.idle}, waiting=${n.waiting})`;
}
