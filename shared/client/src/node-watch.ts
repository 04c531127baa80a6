import { decode, ErrorCodes, ShoalError, type LeaseLostReason, type Subjects } from '@shoal/protocol';
import type { NatsConnection, Subscription } from '@shoal/runtime';

/** What a watch needs of the leases it guards. */
export interface Watched {
  readonly id: string;
  readonly nodeId: string;
  /** The granting node's incarnation, when the node said. */
  readonly nodeStartedAt: number | undefined;
  /** End the lease as lost (idempotent). */
  markLost(err: ShoalError): void;
  /** Ask the node about this lease (a renew): resolves, or rejects with the node's typed error. */
  check(timeoutMs: number): Promise<unknown>;
}

/** Heartbeats missed (in the node's own interval) before the node is asked whether it is still there. */
const SILENT_INTERVALS = 1.5;
/** How long that question may take before a hung (but connected) node is left to the TTL. */
const CHECK_TIMEOUT_MS = 1000;

export function leaseLost(lease: { id: string; nodeId: string }, reason: LeaseLostReason | string, why: string, extra?: Record<string, unknown>): ShoalError {
  return new ShoalError(ErrorCodes.LEASE_LOST, `lease ${lease.id} on node ${lease.nodeId} is lost: ${why}`, { details: { ...extra, reason, nodeId: lease.nodeId, leaseId: lease.id, retryable: true } });
}

/**
 * One per node this client holds leases on, gone with the last of them.
 * It learns that leases are lost from, in order of speed:
 * - the node's own announcements on `events.lease.<nodeId>` (expired,
 *   revoked, drained) and anyone's on `events.node.<nodeId>` (gone);
 * - the node's heartbeats: another `startedAt` is a restart (every lease of
 *   the old incarnation is gone); silence for 1.5 intervals makes it ask the
 *   node about one lease, and a SIGKILLed node's subjects answer "no
 *   responders" at once, so the holders know within about two intervals.
 * Nothing here is on the acquire/release path.
 */
export class NodeWatch {
  readonly leases = new Map<string, Watched>();
  private readonly subs: Subscription[];
  private startedAt: number | undefined;
  private intervalMs = 1000;
  private lastBeat = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private closed = false;
  /** False when the heartbeat subscription was refused: then silence means nothing. */
  private heartbeats = true;

  constructor(
    private readonly nc: NatsConnection, s: Subjects, readonly nodeId: string, private readonly onEmpty: () => void,
    /** True shortly after our own connection came back: the node may not be back yet, "no responders" proves nothing. */
    private readonly justReconnected: () => boolean = () => false,
  ) {
    this.subs = [
      nc.subscribe(s.leaseEvents(nodeId), { callback: (e, m) => { if (!e && m) this.onLeaseEvent(m.data); } }),
      nc.subscribe(s.nodeEvents(nodeId), { callback: (e, m) => { if (!e && m) this.onNodeEvent(m.data); } }),
      nc.subscribe(s.heartbeat(nodeId), {
        callback: (e, m) => {
          // Not allowed to read heartbeats (a restricted role): the events subjects and the renew still tell.
          if (e) { this.heartbeats = false; return; }
          if (m) this.onHeartbeat(m.data);
        },
      }),
    ];
    this.schedule();
  }

  add(l: Watched): void {
    this.leases.set(l.id, l);
    if (this.startedAt === undefined && l.nodeStartedAt !== undefined) this.startedAt = l.nodeStartedAt;
    // A lease granted by an incarnation we already know is gone.
    else if (l.nodeStartedAt !== undefined && this.startedAt !== undefined && l.nodeStartedAt < this.startedAt) {
      l.markLost(leaseLost(l, 'node_restarted', `node restarted (incarnation ${l.nodeStartedAt} replaced by ${this.startedAt})`));
    }
  }

  remove(leaseId: string): void {
    this.leases.delete(leaseId);
    if (this.leases.size === 0) this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    for (const sub of this.subs) sub.unsubscribe();
    this.onEmpty();
  }

  private loseAll(reason: LeaseLostReason, why: string, incarnation?: number): void {
    for (const l of [...this.leases.values()]) {
      if (incarnation !== undefined && l.nodeStartedAt !== undefined && l.nodeStartedAt !== incarnation) continue;
      l.markLost(leaseLost(l, reason, why));
    }
  }

  private onLeaseEvent(data: Uint8Array): void {
    let ev: { lost?: { leaseId?: unknown; reason?: unknown }[] };
    try {
      ev = decode(data) as typeof ev;
    } catch {
      return;
    }
    for (const x of Array.isArray(ev.lost) ? ev.lost : []) {
      const l = typeof x?.leaseId === 'string' ? this.leases.get(x.leaseId) : undefined;
      if (l) l.markLost(leaseLost(l, String(x.reason ?? 'revoked'), `the node says ${String(x.reason ?? 'revoked')}`));
    }
  }

  private onNodeEvent(data: Uint8Array): void {
    let ev: { gone?: unknown; startedAt?: unknown; reason?: unknown; by?: unknown };
    try {
      ev = decode(data) as typeof ev;
    } catch {
      return;
    }
    if (ev.gone !== true) return;
    const inc = typeof ev.startedAt === 'number' ? ev.startedAt : undefined;
    this.loseAll('node_gone', `node gone (${String(ev.reason ?? 'declared gone')}${ev.by ? `, said ${String(ev.by)}` : ''})`, inc);
  }

  private onHeartbeat(data: Uint8Array): void {
    let hb: { startedAt?: unknown; intervalMs?: unknown };
    try {
      hb = decode(data) as typeof hb;
    } catch {
      return;
    }
    this.lastBeat = Date.now();
    if (typeof hb.intervalMs === 'number' && hb.intervalMs > 0 && hb.intervalMs !== this.intervalMs) {
      this.intervalMs = hb.intervalMs;
      this.schedule();
    }
    if (typeof hb.startedAt !== 'number') return;
    if (this.startedAt !== undefined && hb.startedAt > this.startedAt) {
      const old = this.startedAt;
      this.startedAt = hb.startedAt;
      this.loseAll('node_restarted', `node restarted (incarnation ${old} replaced by ${hb.startedAt})`, old);
      // Leases of an unknown incarnation: the restarted node answers LEASE_NOT_FOUND for them.
      void this.checkAll();
      return;
    }
    this.startedAt ??= hb.startedAt;
  }

  private schedule(): void {
    clearTimeout(this.timer);
    if (this.closed) return;
    this.timer = setTimeout(() => { this.tick(); this.schedule(); }, Math.max(50, this.intervalMs / 2));
    this.timer.unref?.();
  }

  private tick(): void {
    if (this.heartbeats && Date.now() - this.lastBeat >= this.intervalMs * SILENT_INTERVALS) void this.checkAll();
  }

  /**
   * Ask the node about each lease. No responders: the node is gone. A lease
   * it does not know (a restart under the same id): lost. A timeout says
   * nothing (hung, or our connection): the renew and the TTL decide.
   */
  private async checkAll(): Promise<void> {
    if (this.checking || this.closed) return;
    this.checking = true;
    try {
      for (const l of [...this.leases.values()]) {
        try {
          await l.check(CHECK_TIMEOUT_MS);
        } catch (err) {
          const e = ShoalError.from(err);
          if (e.code === ErrorCodes.UNAVAILABLE && e.details?.reason === 'no_responders') {
            if (this.justReconnected()) return;
            this.loseAll('node_gone', `node ${this.nodeId} does not answer (no responders: it is gone)`);
            return;
          }
          // Not found here: the node restarted under its id (or ended the lease unannounced); expired is the TTL.
          if (e.code === ErrorCodes.LEASE_NOT_FOUND) l.markLost(leaseLost(l, 'node_restarted', e.message, { cause: e.code }));
          else if (e.code === ErrorCodes.LEASE_EXPIRED) l.markLost(leaseLost(l, 'expired', e.message, { cause: e.code }));
        }
      }
    } finally {
      this.checking = false;
    }
  }
}
