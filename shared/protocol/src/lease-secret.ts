import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The per-lease secret: only the holder gets it (in the grant), and every
 * lease operation must carry it. It is an HMAC of the lease id under a key
 * that never leaves the node's process, so the node stores nothing per lease
 * (a secret checks also for a lease that has already ended) and a restart
 * voids every secret along with the leases themselves.
 */
export class LeaseSecrets {
  private readonly key: Buffer;

  constructor(key: Buffer = randomBytes(32)) {
    this.key = key;
  }

  private mac(leaseId: string): Buffer {
    return createHmac('sha256', this.key).update(leaseId).digest().subarray(0, 16);
  }

  /** The secret of a lease id: 128 bits, base64url (22 characters). */
  secretOf(leaseId: string): string {
    return this.mac(leaseId).toString('base64url');
  }

  /** Does `secret` belong to `leaseId`? Constant time in the secret's content. */
  verify(leaseId: string, secret: unknown): boolean {
    if (typeof secret !== 'string' || secret.length !== 22) return false;
    // Compare the text, not decoded bytes: base64url's last character carries
    // 4 unused bits, and only the one spelling the node handed out is valid.
    const given = Buffer.from(secret, 'latin1');
    return given.length === 22 && timingSafeEqual(given, Buffer.from(this.secretOf(leaseId), 'latin1'));
  }
}
