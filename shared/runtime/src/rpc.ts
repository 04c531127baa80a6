import { ErrorCode as NatsErrorCode, type NatsConnection, type NatsError } from 'nats';
import { encode, ErrorCodes, PROTOCOL_VERSION, readReply, ShoalError } from '@shoal/protocol';
import { requesterOf } from './requester.js';

/** Is this a nats.js "no responders" error? */
export function isNoResponders(err: unknown): boolean {
  return (err as NatsError)?.code === NatsErrorCode.NoResponders;
}

/** Is this a nats.js request timeout? */
export function isTimeout(err: unknown): boolean {
  return (err as NatsError)?.code === NatsErrorCode.Timeout;
}

/** Map a transport failure to a ShoalError; ShoalErrors pass through. */
export function transportError(err: unknown, subject: string): ShoalError {
  if (err instanceof ShoalError) return err;
  if (isNoResponders(err)) return new ShoalError(ErrorCodes.UNAVAILABLE, `no responders on ${subject}`, { details: { reason: 'no_responders', subject } });
  if (isTimeout(err)) return new ShoalError(ErrorCodes.UNAVAILABLE, `no answer on ${subject} in time`, { details: { reason: 'timeout', subject } });
  return ShoalError.from(err);
}

/**
 * One request-reply with a Shoal message: adds the protocol version, decodes
 * the reply, and turns an error reply or a transport failure into a ShoalError.
 */
export async function call<T>(nc: NatsConnection, subject: string, body: Record<string, unknown>, timeoutMs: number, onLate?: (data: Uint8Array) => void): Promise<T> {
  const msg = await requesterOf(nc).request(subject, encode({ v: PROTOCOL_VERSION, ...body }), timeoutMs, onLate);
  return readReply<T>(msg.data);
}
