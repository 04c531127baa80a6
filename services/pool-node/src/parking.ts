import type { KV, NatsConnection } from 'nats';
import { parkKeyHash, type Lease } from '@shoal/protocol';
import { openBucket, type JetStreamSettings, type Logger } from '@shoal/runtime';
import type { Driver } from './driver.js';
import type { Pool } from './pool.js';

/**
 * Conversations that come back. A release with `park: <key>` keeps the
 * resource with its context on this node (the pool's parked map); an acquire
 * with the key claims it (`park: 'hit'`). Balancers send such an acquire to
 * the node whose heartbeat lists the key, so a hit costs no lookup.
 *
 * For the key to outlive its resource (evicted, node died) the node records
 * `<pool>.<hash of the key>` → the resource's description (the Claude
 * session id) in the KV bucket `shoal_parked` when parking. The key itself
 * is a bearer credential for its conversation: it is neither stored (every
 * pool-node and admin credential reads the bucket) nor logged, only its
 * hash (so a key outside the KV's character set is recorded all the
 * same). The record is written on the release path, never on an acquire
 * that hits. An acquire that misses reads it once and asks the
 * driver to continue from it (`adopt`: claude-cli `--resume` from a shared
 * session store): `park: 'resumed'`, else `park: 'gone'`.
 */
export const PARKED_BUCKET = 'shoal_parked';

/** A key's record in `shoal_parked`: by its hash (base64url, within the KV's character set). */
export function recordKey(pool: string, keyHash: string): string {
  return `${pool}.${keyHash}`;
}

interface Record_ {
  meta: Record<string, unknown>;
  nodeId: string;
  at: number;
}

export class Parking {
  private opening: Promise<KV> | undefined;

  constructor(private readonly nc: NatsConnection, private readonly nodeId: string, private readonly log: Logger, private readonly jetstream: JetStreamSettings = {}) {}

  private kv(): Promise<KV> {
    if (!this.opening) {
      this.opening = openBucket(this.nc, PARKED_BUCKET, { ...this.jetstream, timeoutMs: 5000, log: this.log });
      this.opening.catch(() => { this.opening = undefined; });
    }
    return this.opening;
  }

  /** Remember what a parked resource was, for a resume elsewhere; best effort, off the caller's path. */
  remember(pool: string, key: string, meta: Record<string, unknown> | undefined): void {
    if (!meta) return;
    const value: Record_ = { meta, nodeId: this.nodeId, at: Date.now() };
    const keyHash = parkKeyHash(key);
    this.kv().then((kv) => kv.put(recordKey(pool, keyHash), JSON.stringify(value))).catch((err: Error) => {
      this.log.warn('parked key not recorded (no resume elsewhere for it)', { pool, keyHash, err: err.message });
    });
  }

  /**
   * A fresh lease for a key whose parked resource is gone: continue it from
   * the record if the driver can, and say which it was.
   */
  async adopt(pool: Pool, driver: Driver, lease: Lease, key: string): Promise<Lease> {
    let rec: Record_ | undefined;
    try {
      const e = await (await this.kv()).get(recordKey(pool.name, parkKeyHash(key)));
      if (e && e.operation === 'PUT') rec = JSON.parse(new TextDecoder().decode(e.value)) as Record_;
    } catch {
      rec = undefined;
    }
    if (!rec || !driver.adopt) return { ...lease, park: 'gone' };
    const resumed = await pool.adopt(lease.leaseId, rec.meta);
    return { ...resumed.lease, park: resumed.ok ? 'resumed' : 'gone' };
  }
}
