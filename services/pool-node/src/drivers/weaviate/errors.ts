import { ErrorCodes, ShoalError } from '@shoal/protocol';

/**
 * What went wrong talking to Weaviate, as a typed Shoal error:
 *
 * - the server cannot be reached (refused, reset, DNS, gRPC UNAVAILABLE, the
 *   client's startup checks failing on the network) → WEAVIATE_UNAVAILABLE,
 *   `details.retryable: true`;
 * - Weaviate answered with an error → DRIVER_ERROR with Weaviate's own
 *   message, `details.retryable` true for 5xx/429 and the gRPC codes where a
 *   retry can help (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
 *   ABORTED, INTERNAL, CANCELLED), false otherwise (422 validation, 404, auth...);
 * - a request timed out → DRIVER_ERROR, retryable, `details.timeout: true`;
 * - the client rejected the input before sending it → BAD_REQUEST.
 *
 * weaviate-client does not export its error classes, so they are told apart
 * by `name` (each sets it to its class name) and message.
 */

const NETWORK = /fetch failed|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|socket hang up|other side closed|SocketError|No connection established|Connection dropped|connect ECONN|gRPC health check against Weaviate could not be completed/i;
const GRPC_STATUS = /\b(CANCELLED|UNKNOWN|INVALID_ARGUMENT|DEADLINE_EXCEEDED|NOT_FOUND|ALREADY_EXISTS|PERMISSION_DENIED|RESOURCE_EXHAUSTED|FAILED_PRECONDITION|ABORTED|OUT_OF_RANGE|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS|UNAUTHENTICATED): /;
// CANCELLED from the server side: the connection went away mid-call (a stopping server); another attempt may reach it.
const GRPC_RETRYABLE = new Set(['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED', 'ABORTED', 'INTERNAL', 'CANCELLED']);
const HTTP_STATUS = /status code: (\d{3}) and message: ([\s\S]*)$/;

/** Weaviate's error body is {"error":[{"message":"..."}]}; keep the message(s), else the text as sent. */
export function weaviateMessage(body: string): string {
  try {
    const j = JSON.parse(body) as { error?: { message?: string }[]; message?: string };
    if (Array.isArray(j.error) && j.error.length > 0) return j.error.map((e) => e.message ?? JSON.stringify(e)).join('; ');
    if (typeof j.message === 'string') return j.message;
  } catch {
    // not JSON: as sent
  }
  return body.trim();
}

/** The innermost useful text of an error, following `cause` (undici puts the socket error there). */
function chain(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, i = 0; e && i < 5; e = (e as { cause?: unknown }).cause, i++) {
    if (e instanceof Error) parts.push(`${e.message}${(e as { code?: string }).code ? ` (${(e as { code?: string }).code})` : ''}`);
    else parts.push(String(e));
  }
  return parts.join(': ');
}

export function unavailable(what: string, cause: string, extra: Record<string, unknown> = {}): ShoalError {
  return new ShoalError(ErrorCodes.WEAVIATE_UNAVAILABLE, `${what}: Weaviate is unreachable: ${cause}`, { details: { retryable: true, cause, ...extra } });
}

/** Classify anything thrown by weaviate-client during `what` (an op name, or 'connect'). */
export function classify(err: unknown, what: string, where?: string): ShoalError {
  if (err instanceof ShoalError) return err;
  const name = err instanceof Error ? err.name : '';
  const text = chain(err);
  const extra = where ? { endpoint: where } : {};
  if (name === 'WeaviateInvalidInputError') {
    return new ShoalError(ErrorCodes.BAD_REQUEST, `${what}: ${(err as Error).message}`, { details: { retryable: false, cause: text } });
  }
  if (name === 'WeaviateRequestTimeoutError') {
    return new ShoalError(ErrorCodes.DRIVER_ERROR, `${what}: Weaviate did not answer in time: ${(err as Error).message}`, { details: { retryable: true, timeout: true, cause: text, ...extra } });
  }
  if (name === 'WeaviateGRPCUnavailableError') return unavailable(what, 'the gRPC health check failed', extra);
  const http = HTTP_STATUS.exec(err instanceof Error ? err.message : text);
  if (http && (name === 'WeaviateUnexpectedStatusCodeError' || name === 'WeaviateStartUpError')) {
    const status = Number(http[1]);
    const msg = weaviateMessage(http[2]!);
    return new ShoalError(ErrorCodes.DRIVER_ERROR, `${what}: Weaviate answered ${status}: ${msg}`, { details: { retryable: status >= 500 || status === 429, status, cause: msg, ...extra } });
  }
  if (name === 'WeaviateUnauthenticatedError' || name === 'WeaviateInsufficientPermissionsError') {
    return new ShoalError(ErrorCodes.DRIVER_ERROR, `${what}: ${(err as Error).message}`, { details: { retryable: false, status: name === 'WeaviateUnauthenticatedError' ? 401 : 403, cause: text, ...extra } });
  }
  const grpc = GRPC_STATUS.exec(text);
  if (grpc) {
    const status = grpc[1]!;
    const msg = text.slice(text.indexOf(grpc[0]) + grpc[0].length).trim();
    if (status === 'UNAVAILABLE' && NETWORK.test(text)) return unavailable(what, msg, { grpcStatus: status, ...extra });
    return new ShoalError(ErrorCodes.DRIVER_ERROR, `${what}: Weaviate answered ${status}: ${msg}`, { details: { retryable: GRPC_RETRYABLE.has(status), grpcStatus: status, cause: msg, ...extra } });
  }
  // "Weaviate startup failed with message: Weaviate failed to startup with message: fetch failed: connect ECONNREFUSED ..." → the cause.
  if (NETWORK.test(text)) return unavailable(what, text.replace(/^(Weaviate startup failed with message: )?(Weaviate failed to startup with message: )?/, ''), extra);
  if (name === 'WeaviateUnsupportedFeatureError') {
    return new ShoalError(ErrorCodes.DRIVER_ERROR, `${what}: ${(err as Error).message}`, { details: { retryable: false, cause: text, ...extra } });
  }
  return new ShoalError(ErrorCodes.DRIVER_ERROR, `${what}: ${text}`, { details: { retryable: false, cause: text, ...extra } });
}

export const isUnavailable = (e: ShoalError) => e.code === ErrorCodes.WEAVIATE_UNAVAILABLE;
