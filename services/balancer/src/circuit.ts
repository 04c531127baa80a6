export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitOptions {
  /** Consecutive failures that open the circuit. Default 5. */
  failureThreshold?: number;
  /** How long an open circuit refuses before letting one probe through. Default 5000 ms. */
  cooldownMs?: number;
  /**
   * A probe whose outcome was never reported stops blocking the next one after
   * this long; otherwise one lost reply would keep the node half-open forever.
   * Default 30000 ms.
   */
  probeTimeoutMs?: number;
}

interface Entry {
  failures: number;
  /** Set while open or half-open; half-open is derived from it and `now`. */
  openedAt?: number;
  /** When the half-open probe was let through, until its outcome arrives. */
  probeAt?: number;
}

/**
 * One breaker per node. Pure: time is passed in. Callers report the outcome
 * of every request `allow` let through (timeouts count as failures), else a
 * half-open node waits for `probeTimeoutMs` before the next probe.
 */
export class CircuitBreaker {
  readonly failureThreshold: number;
  readonly cooldownMs: number;
  readonly probeTimeoutMs: number;
  private readonly entries = new Map<string, Entry>();

  constructor(opts: CircuitOptions = {}) {
    this.failureThreshold = positive('failureThreshold', opts.failureThreshold ?? 5);
    this.cooldownMs = positive('cooldownMs', opts.cooldownMs ?? 5000, true);
    this.probeTimeoutMs = positive('probeTimeoutMs', opts.probeTimeoutMs ?? 30_000);
  }

  state(nodeId: string, now: number): CircuitState {
    const e = this.entries.get(nodeId);
    if (e?.openedAt === undefined) return 'closed';
    return now - e.openedAt < this.cooldownMs ? 'open' : 'half_open';
  }

  /**
   * Would `allow` say yes? Does not claim the half-open probe, so it is the one
   * to use when filtering candidates: filtering with `allow` would spend the
   * probe on a node the strategy may then not choose.
   */
  available(nodeId: string, now: number): boolean {
    switch (this.state(nodeId, now)) {
      case 'closed': return true;
      case 'open': return false;
      case 'half_open': return !this.probeOut(this.entries.get(nodeId)!, now);
    }
  }

  /** Call once for the node actually chosen; in half-open the first caller gets the single probe. */
  allow(nodeId: string, now: number): boolean {
    switch (this.state(nodeId, now)) {
      case 'closed': return true;
      case 'open': return false;
      case 'half_open': {
        const e = this.entries.get(nodeId)!;
        if (this.probeOut(e, now)) return false;
        e.probeAt = now;
        return true;
      }
    }
  }

  /**
   * `sentAt`: when the request whose outcome this is was sent. While the
   * circuit is open, only the probe's own outcome counts: a late reply to a
   * request sent before the probe says nothing about the node now.
   */
  success(nodeId: string, sentAt?: number): void {
    const e = this.entries.get(nodeId);
    if (e === undefined) return;
    // While open without a probe out, a success is a late reply to a request
    // sent before the circuit opened; the cooldown still has to run.
    if (e.openedAt !== undefined && e.probeAt === undefined) return;
    if (e.probeAt !== undefined && sentAt !== undefined && sentAt < e.probeAt) return;
    this.entries.delete(nodeId);
  }

  /** The probe's outcome will never come (our own connection failed): free the slot for the next one. */
  abandon(nodeId: string): void {
    const e = this.entries.get(nodeId);
    if (e) e.probeAt = undefined;
  }

  failure(nodeId: string, now: number, sentAt?: number): void {
    let e = this.entries.get(nodeId);
    if (e === undefined) {
      e = { failures: 0 };
      this.entries.set(nodeId, e);
    }
    if (e.openedAt === undefined) {
      if (++e.failures >= this.failureThreshold) e.openedAt = now;
      return;
    }
    // A failed probe re-opens with a fresh cooldown. Late failures of requests
    // sent before opening (or before the probe) do not extend the cooldown.
    if (e.probeAt !== undefined && (sentAt === undefined || sentAt >= e.probeAt)) {
      e.openedAt = now;
      e.probeAt = undefined;
    }
  }

  /** Drop a node's state, e.g. when membership removes it. */
  forget(nodeId: string): void {
    this.entries.delete(nodeId);
  }

  private probeOut(e: Entry, now: number): boolean {
    return e.probeAt !== undefined && now - e.probeAt < this.probeTimeoutMs;
  }
}

function positive(name: string, v: number, allowZero = false): number {
  if (!Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) throw new RangeError(`circuit ${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${String(v)}`);
  return v;
}
