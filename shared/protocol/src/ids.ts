import { randomFillSync } from 'node:crypto';
import { monotonicFactory } from 'ulid';

/**
 * ulid's default generator calls crypto.getRandomValues once per character:
 * 16 calls (~37 µs) for the first id of every millisecond, 11 % of a node's
 * busy time at low concurrency. Draw from a buffer refilled 4 KB at a time.
 */
const pool = new Uint32Array(1024);
let next = pool.length;
function prng(): number {
  if (next === pool.length) {
    randomFillSync(pool);
    next = 0;
  }
  return pool[next++]! / 0x1_0000_0000;
}

const ulid = monotonicFactory(prng);

/** A ULID: sortable by creation time, unique across processes. */
export function newId(): string {
  return ulid();
}

/** Random bytes from a buffer refilled 4 KB at a time (one syscall per 256 ids); each 16 bytes are used once. */
const bytes = Buffer.alloc(4096);
let bytesAt = bytes.length;

/**
 * Lease ids are 128 random bits (22 base64url characters), not ULIDs: ids
 * granted in one millisecond by a monotonic ULID differ by one, so "my id + 1"
 * named another client's lease. They embed nothing about the node either;
 * routing uses the lease's nodeId.
 */
export function newLeaseId(): string {
  if (bytesAt + 16 > bytes.length) {
    randomFillSync(bytes);
    bytesAt = 0;
  }
  bytesAt += 16;
  return bytes.toString('base64url', bytesAt - 16, bytesAt);
}
export const newResourceId = newId;
export const newNodeId = newId;
