import { newLeaseId } from './ids.js';

/**
 * The per-lease secret: 128 random bits (22 base64url characters) drawn when
 * the lease is granted, sent only to the holder, and required on every lease
 * operation. Kept with the lease on its node; a random draw from the buffered
 * CSPRNG costs about as much as a ULID, an HMAC per operation 2-5 times more.
 */
export function newLeaseSecret(): string {
  return newLeaseId();
}

/** Does `given` equal `expected`? Constant time in the content (the length, 22, is public). */
export function sameSecret(expected: string, given: unknown): boolean {
  if (typeof given !== 'string' || given.length !== expected.length) return false;
  // Every character is looked at whatever differs (no early exit), without
  // the two buffers crypto.timingSafeEqual would need. The text is compared,
  // not decoded bytes: base64url's last character carries 4 unused bits, and
  // only the spelling the node handed out is valid.
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= expected.charCodeAt(i) ^ given.charCodeAt(i);
  return diff === 0;
}
