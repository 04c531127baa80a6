import { createInbox, type Msg, type NatsConnection, type Subscription } from 'nats';
import { ErrorCodes, ShoalError } from '@shoal/protocol';
import { inboxPrefixOf } from './nats.js';

/** How long a timed-out request still listens for its late reply. */
const LATE_GRACE_MS = 30_000;

interface Pending {
  /** Called for each message; returns true when the exchange is over. */
  onMsg: (m: Msg) => boolean;
  onTimeout: () => void;
  onFail?: (e: ShoalError) => void;
  timer: NodeJS.Timeout;
  /** Streams waiting on silence: each message re-arms the timer for this long. */
  idleMs: number | undefined;
  fire: () => void;
}

/**
 * Request-reply over one wildcard inbox subscription, like nats.js's own
 * multiplexer, minus its habit of building a NatsError (with a stack trace) to
 * "cancel" every request that succeeded: that was 27 % of a client's busy time
 * and 12 % of a balancer's in the acquire benchmark. Failures are ShoalErrors
 * (UNAVAILABLE with `details.reason` no_responders | timeout).
 */
export class Requester {
  private readonly prefix: string;
  private readonly pending = new Map<string, Pending>();
  /** Timed-out requests whose caller wants a reply that comes late (to undo it), by token. */
  private readonly late = new Map<string, (data: Uint8Array) => void>();
  private seq = 0;
  private sub: Subscription | undefined;

  constructor(private readonly nc: NatsConnection) {
    // Under the connection's own inbox prefix: with roles on, the only replies it may receive.
    this.prefix = createInbox(inboxPrefixOf(nc));
    // No reply can come on a closed connection: what waits fails now rather
    // than at its deadline (up to minutes for an acquire), whose timer would
    // also keep a process that closed its client from exiting.
    const onClosed = () => this.failAll(new ShoalError(ErrorCodes.UNAVAILABLE, 'the NATS connection is closed', { details: { reason: 'closed' } }));
    void nc.closed().then(onClosed, onClosed);
  }

  private failAll(err: ShoalError): void {
    for (const [token, p] of this.pending) { this.pending.delete(token); clearTimeout(p.timer); p.onFail?.(err); }
  }

  private listen(): void {
    this.sub = this.nc.subscribe(`${this.prefix}.*`, {
      callback: (err, m) => {
        if (err) {
          // The inbox subscription died (a permissions error): fail what waits, start afresh next time.
          this.sub = undefined;
          this.failAll(new ShoalError(ErrorCodes.UNAVAILABLE, `reply subscription failed: ${err.message}`, { details: { reason: 'subscription' } }));
          return;
        }
        const token = m.subject.slice(this.prefix.length + 1);
        const p = this.pending.get(token);
        if (!p) {
          const onLate = this.late.get(token);
          if (onLate && !isNoRespondersStatus(m)) { this.late.delete(token); onLate(m.data); }
          return;
        }
        if (p.onMsg(m)) {
          this.pending.delete(token);
          clearTimeout(p.timer);
        } else if (p.idleMs !== undefined && this.pending.get(token) === p) {
          clearTimeout(p.timer);
          p.timer = setTimeout(p.fire, p.idleMs);
        }
      },
    });
  }

  /**
   * One request, one reply. `onLate` gets a reply that arrives after the
   * timeout (within LATE_GRACE_MS), e.g. to release a lease granted too late.
   */
  request(subject: string, data: Uint8Array, timeoutMs: number, onLate?: (data: Uint8Array) => void): Promise<Msg> {
    return new Promise<Msg>((resolve, reject) => {
      this.exchange(subject, data, timeoutMs, {
        onMsg: (m) => {
          if (isNoRespondersStatus(m)) reject(new ShoalError(ErrorCodes.UNAVAILABLE, `no responders on ${subject}`, { details: { reason: 'no_responders', subject } }));
          else resolve(m);
          return true;
        },
        onTimeout: () => reject(new ShoalError(ErrorCodes.UNAVAILABLE, `no answer on ${subject} within ${timeoutMs} ms`, { details: { reason: 'timeout', subject } })),
        onFail: (err) => reject(err),
      }, onLate);
    });
  }

  /**
   * One request, several replies (a streamed exec): `onMsg` sees each and
   * returns true at the last. No subscription is made or removed per call.
   * With `idleMs`, `timeoutMs` bounds only the wait for the first message;
   * after each one the caller waits `idleMs` for the next (a stream whose
   * node sends keep-alives). Returns a function that stops listening.
   */
  stream(subject: string, data: Uint8Array, timeoutMs: number, h: { onMsg: (m: Msg) => boolean; onTimeout: () => void; onFail: (e: ShoalError) => void; idleMs?: number }): () => void {
    return this.exchange(subject, data, timeoutMs, h);
  }

  private exchange(subject: string, data: Uint8Array, timeoutMs: number, h: { onMsg: (m: Msg) => boolean; onTimeout: () => void; onFail: (e: ShoalError) => void; idleMs?: number }, onLate?: (data: Uint8Array) => void): () => void {
    if (this.nc.isClosed()) {
      h.onFail(new ShoalError(ErrorCodes.UNAVAILABLE, `cannot send on ${subject}: the NATS connection is closed`, { details: { reason: 'closed', subject } }));
      return () => {};
    }
    if (!this.sub) this.listen();
    const token = (this.seq++).toString(36);
    const fire = () => {
      this.pending.delete(token);
      if (onLate) {
        this.late.set(token, onLate);
        setTimeout(() => this.late.delete(token), LATE_GRACE_MS).unref?.();
      }
      h.onTimeout();
    };
    const timer = setTimeout(fire, timeoutMs);
    this.pending.set(token, { onMsg: h.onMsg, onTimeout: h.onTimeout, onFail: h.onFail, timer, fire, idleMs: h.idleMs });
    try {
      this.nc.publish(subject, data, { reply: `${this.prefix}.${token}` });
    } catch (err) {
      this.pending.delete(token);
      clearTimeout(timer);
      h.onFail(new ShoalError(ErrorCodes.UNAVAILABLE, `cannot send on ${subject}: ${(err as Error).message}`, { details: { reason: 'closed', subject } }));
    }
    return () => {
      this.pending.delete(token);
      clearTimeout(timer);
    };
  }
}

/** The server's "no responders" status: an empty message with a 503 header. */
export function isNoRespondersStatus(m: Msg): boolean {
  return m.data.length === 0 && m.headers?.code === 503;
}

const requesters = new WeakMap<NatsConnection, Requester>();

/** The connection's shared requester. */
export function requesterOf(nc: NatsConnection): Requester {
  let r = requesters.get(nc);
  if (!r) requesters.set(nc, (r = new Requester(nc)));
  return r;
}
