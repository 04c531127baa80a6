import { PARK_KEY_HASH_BYTES } from '@shoal/protocol';

/**
 * Most bytes of parked-key hashes one heartbeat carries (about 5,000 keys):
 * every balancer reads every heartbeat, so its size is paid by all of them
 * every interval. Within the server's max_payload too (see `parkedBudget`).
 */
export const PARKED_HEARTBEAT_BYTES = 64 * 1024;

/** Room for a pool's `parkedHashes` and `parkedOmitted` fields around the hashes. */
const PER_POOL_OVERHEAD = 40;
/** Left free under max_payload for what the estimate does not see (the subject is not in the payload, this is slack). */
const SLACK = 256;

/** Bytes left for parked-key hashes in a heartbeat whose other fields take `baseBytes`. */
export function parkedBudget(baseBytes: number, maxPayload: number | undefined): number {
  return Math.max(0, Math.min(PARKED_HEARTBEAT_BYTES, (maxPayload ?? 1024 * 1024) - baseBytes - SLACK));
}

/**
 * Share the budget between the pools that park: each gets an equal share of
 * what is left, a pool that needs less leaves the rest to the others. The
 * newest keys of each pool go first. Pure.
 */
export function shareParked(parked: { pool: string; count: number }[], budgetBytes: number): Map<string, number> {
  const out = new Map<string, number>();
  const want = parked.filter((p) => p.count > 0).sort((a, b) => a.count - b.count);
  let left = budgetBytes;
  for (let i = 0; i < want.length; i++) {
    const share = Math.floor(left / (want.length - i));
    const fits = Math.max(0, Math.floor((share - PER_POOL_OVERHEAD) / PARK_KEY_HASH_BYTES));
    const n = Math.min(want[i]!.count, fits);
    out.set(want[i]!.pool, n);
    left -= n > 0 || want[i]!.count > 0 ? PER_POOL_OVERHEAD + n * PARK_KEY_HASH_BYTES : 0;
  }
  return out;
}
