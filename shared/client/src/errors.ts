import { ErrorCodes, ShoalError, type ErrorCode } from '@shoal/protocol';

/**
 * One class per error code, so callers can `catch (e) { if (e instanceof
 * PoolTimeoutError) ... }`. All are ShoalErrors: `code`, `message`, and the
 * pool's numbers in `pool` where the node gave them.
 */
export class PoolTimeoutError extends ShoalError {}
export class PoolExhaustedError extends ShoalError {}
export class PoolBusyError extends ShoalError {}
export class PoolNotFoundError extends ShoalError {}
export class LeaseNotFoundError extends ShoalError {}
export class LeaseExpiredError extends ShoalError {}
export class NodeDrainingError extends ShoalError {}
export class BadRequestError extends ShoalError {}
export class VersionMismatchError extends ShoalError {}
export class DriverError extends ShoalError {}
export class UnsupportedOpError extends ShoalError {}
export class SessionBusyError extends ShoalError {}
export class SessionStalledError extends ShoalError {}
export class TurnTimeoutError extends ShoalError {}
export class NoNodesError extends ShoalError {}
export class CancelledError extends ShoalError {}
export class UnavailableError extends ShoalError {}
export class InternalError extends ShoalError {}
export class WeaviateUnavailableError extends ShoalError {}
export class StaleEpochError extends ShoalError {}
export class PoolUnavailableError extends ShoalError {}
export class LeaseLostError extends ShoalError {}
export class NotParkedError extends ShoalError {}

const byCode: Record<ErrorCode, typeof ShoalError> = {
  [ErrorCodes.POOL_TIMEOUT]: PoolTimeoutError,
  [ErrorCodes.POOL_EXHAUSTED]: PoolExhaustedError,
  [ErrorCodes.POOL_BUSY]: PoolBusyError,
  [ErrorCodes.POOL_NOT_FOUND]: PoolNotFoundError,
  [ErrorCodes.LEASE_NOT_FOUND]: LeaseNotFoundError,
  [ErrorCodes.LEASE_EXPIRED]: LeaseExpiredError,
  [ErrorCodes.NODE_DRAINING]: NodeDrainingError,
  [ErrorCodes.BAD_REQUEST]: BadRequestError,
  [ErrorCodes.VERSION_MISMATCH]: VersionMismatchError,
  [ErrorCodes.DRIVER_ERROR]: DriverError,
  [ErrorCodes.UNSUPPORTED_OP]: UnsupportedOpError,
  [ErrorCodes.SESSION_BUSY]: SessionBusyError,
  [ErrorCodes.SESSION_STALLED]: SessionStalledError,
  [ErrorCodes.TURN_TIMEOUT]: TurnTimeoutError,
  [ErrorCodes.NO_NODES]: NoNodesError,
  [ErrorCodes.CANCELLED]: CancelledError,
  [ErrorCodes.UNAVAILABLE]: UnavailableError,
  [ErrorCodes.INTERNAL]: InternalError,
  [ErrorCodes.WEAVIATE_UNAVAILABLE]: WeaviateUnavailableError,
  [ErrorCodes.STALE_EPOCH]: StaleEpochError,
  [ErrorCodes.POOL_UNAVAILABLE]: PoolUnavailableError,
  [ErrorCodes.LEASE_LOST]: LeaseLostError,
  [ErrorCodes.NOT_PARKED]: NotParkedError,
};

/** Re-type any error as the class of its code. */
export function typed(err: unknown): ShoalError {
  const e = ShoalError.from(err);
  const Cls = byCode[e.code] ?? ShoalError;
  if (e.constructor === Cls) return e;
  const t = new Cls(e.code, e.message, { pool: e.pool, details: e.details });
  t.name = Cls.name;
  return t;
}
