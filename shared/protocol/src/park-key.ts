import { createHash } from 'node:crypto';

/**
 * What a heartbeat says of a parking key: 72 bits of its SHA-256 as 12
 * base64url characters. Fixed size, so the heartbeat's size does not grow
 * with the keys' length (up to 128 characters); and a key is a bearer
 * credential for its conversation, so it never rides in a heartbeat itself.
 * Balancers hash the key of a keyed acquire the same way to find its node. A
 * collision can only send an acquire to the wrong node, which then misses
 * (nodes grant by the key itself, never by its hash).
 */
export function parkKeyHash(key: string): string {
  return createHash('sha256').update(key).digest().toString('base64url', 0, 9);
}

/** Bytes one hash takes in a msgpack heartbeat (a fixstr: one header byte). */
export const PARK_KEY_HASH_BYTES = 13;
