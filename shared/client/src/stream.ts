import { encode, ErrorCodes, PROTOCOL_VERSION, readStream, ShoalError } from '@shoal/protocol';
import { isNoRespondersStatus, requesterOf, type NatsConnection } from '@shoal/runtime';
import { typed } from './errors.js';

/** Leave a little of the caller's deadline for the reply's trip back. */
export function serverDeadline(timeoutMs: number): number {
  return Math.max(1, Math.floor(timeoutMs - Math.min(100, timeoutMs * 0.1)));
}

/**
 * A streamed request: events arrive as messages on our inbox, the last one
 * carries `done` and the result. Await it for the result; iterate it for the
 * events (then `result` holds the final value). Sent at once, so that a call
 * nobody awaits (an `interrupt`) still happens; events are kept until it is
 * clear whether anyone iterates.
 */
export class ExecCall implements PromiseLike<unknown>, AsyncIterable<unknown> {
  private started = false;
  /** Keep events: until `then` without iteration says nobody will read them. */
  private wantEvents = true;
  private iterating = false;
  private readonly events: unknown[] = [];
  private wake: (() => void) | undefined;
  private finished = false;
  private failure: unknown;
  private resolveResult!: (v: unknown) => void;
  private rejectResult!: (e: unknown) => void;
  /** The final result; resolves after the last event. */
  readonly result: Promise<unknown>;
  /** Set by the last message of a one-shot that parked its resource: the node it is parked on. */
  nodeId: string | undefined;
  private readonly sentAt = Date.now();

  constructor(
    private readonly nc: NatsConnection,
    private subject: string,
    private body: Record<string, unknown>,
    private readonly timeoutMs: number,
    /** Wait on silence: after the first message, at most this long between two (the node sends keep-alives). */
    private readonly idleMs?: number,
    /**
     * Where to ask instead if the first answer is a refusal that proves
     * nothing ran (NOT_PARKED from the node a key was parked on, no
     * responders, draining): asking again cannot run the operation twice.
     */
    private retry?: { subject: string; body: Record<string, unknown> },
  ) {
    this.result = new Promise((res, rej) => { this.resolveResult = res; this.rejectResult = rej; });
    // Nobody may be listening to `result` when iterating only; don't let that be "unhandled".
    this.result.catch(() => {});
    this.start();
  }

  private stop: (() => void) | undefined;

  /** End the call now with `err` (its lease was lost): the node's later messages are ignored. */
  fail(err: unknown): void {
    if (this.finished) return;
    this.stop?.();
    this.finish(err);
  }

  private finish(err: unknown, result?: unknown): boolean {
    if (this.finished) return true;
    this.finished = true;
    if (err) { this.failure = typed(err); this.rejectResult(this.failure); } else this.resolveResult(result);
    this.wake?.();
    return true;
  }

  /** A first answer that another node could do better: ask there instead (once). True if it did. */
  private retried(err: unknown): boolean {
    const r = this.retry;
    const e = ShoalError.from(err);
    // Refusals sent before anything is taken. Not POOL_UNAVAILABLE / WEAVIATE_UNAVAILABLE: an exec can end with them after it ran.
    const nothingRan = e.code === ErrorCodes.NOT_PARKED || e.code === ErrorCodes.NODE_DRAINING || e.code === ErrorCodes.POOL_BUSY || e.details?.reason === 'no_responders';
    if (!r || !nothingRan) return false;
    this.retry = undefined;
    this.subject = r.subject;
    // The wait for a resource already spent here (a return waited for) is not given again.
    const spent = Date.now() - this.sentAt;
    this.body = typeof r.body.timeoutMs === 'number' ? { ...r.body, timeoutMs: serverDeadline(Math.max(1, r.body.timeoutMs - spent)) } : r.body;
    this.started = false;
    this.start(Math.max(1, this.timeoutMs - spent));
    return true;
  }

  private start(timeoutMs = this.timeoutMs): void {
    if (this.started) return;
    this.started = true;
    let answered = false;
    const finish = (err: unknown, result?: unknown): boolean => this.finish(err, result);
    // Only a first answer that proves nothing ran is asked again elsewhere: never a timeout (it may be running).
    const refused = (err: unknown): boolean => (!answered && this.retried(err)) || this.finish(err);
    this.stop = requesterOf(this.nc).stream(this.subject, encode({ v: PROTOCOL_VERSION, ...this.body }), timeoutMs, {
      onMsg: (msg) => {
        if (isNoRespondersStatus(msg)) return refused(new ShoalError(ErrorCodes.UNAVAILABLE, `no responders on ${this.subject}`, { details: { reason: 'no_responders' } }));
        try {
          const m = readStream(msg.data);
          answered = true;
          if (m.done) { this.nodeId = m.nodeId; return finish(undefined, m.result); }
          if (this.wantEvents) {
            if (m.events) for (const e of m.events) this.events.push(e);
            else this.events.push(m.event);
            this.wake?.();
          }
          return false;
        } catch (e) {
          return refused(e);
        }
      },
      onTimeout: () => finish(new ShoalError(ErrorCodes.UNAVAILABLE, this.idleMs !== undefined
        ? `no word from the node on ${this.subject} for ${this.idleMs} ms (keep-alives stopped): it is gone or unreachable`
        : `no final answer on ${this.subject} within ${this.timeoutMs} ms`, { details: { reason: 'timeout' } })),
      onFail: (e) => finish(e),
      idleMs: this.idleMs,
    });
  }

  then<A = unknown, B = never>(onOk?: ((v: unknown) => A | PromiseLike<A>) | null, onErr?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    // Awaited for its result only: stop keeping events.
    if (!this.iterating) { this.wantEvents = false; this.events.length = 0; }
    return this.result.then(onOk, onErr);
  }

  catch<B = never>(onErr?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<unknown> {
    return this.then(undefined, onErr);
  }

  finally(onFinally?: (() => void) | null): Promise<unknown> {
    return this.then((v) => v).finally(onFinally);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<unknown> {
    this.iterating = true;
    for (;;) {
      if (this.events.length > 0) { yield this.events.shift(); continue; }
      if (this.finished) break;
      await new Promise<void>((r) => { this.wake = r; });
      this.wake = undefined;
    }
    if (this.failure) throw this.failure;
  }
}
