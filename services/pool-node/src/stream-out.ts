import { encode, ErrorCodes, fail, PROTOCOL_VERSION, ShoalError } from '@shoal/protocol';
import type { Logger, NatsConnection } from '@shoal/runtime';

/** Events in one stream message at most; a Claude answer emits hundreds of small ones. */
const MAX_BATCH = 64;
/** Room left under the server's max_payload for NATS headers and subject. */
const ENVELOPE = 4096;

/**
 * The answer stream of one exec. Events emitted in the same turn of the event
 * loop (a driver parsing one stdout chunk emits many at once) go out as one
 * message `{seq, events: [...]}` — a NATS message per event was the cost of a
 * streamed answer. A lone event goes as `{seq, event}`; `seq` is the index of
 * the message's first event. The final message (`done`) or an error flushes
 * what is pending first, so order is kept.
 *
 * Nothing is dropped silently: an event or result larger than the server's
 * max_payload ends the stream with BAD_REQUEST (`payload_too_large`), so the
 * caller gets an answer instead of waiting for its timeout.
 */
export class StreamOut {
  private seq = 0;
  private buf: unknown[] = [];
  private pending: NodeJS.Immediate | undefined;
  /** Set once the stream had to end early: later events and the result are not sent. */
  private broken = false;
  private readonly maxBytes: number;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  /** Something was published since the keep-alive timer last looked. */
  private sent = false;

  constructor(private readonly nc: NatsConnection, private readonly subject: string | undefined, private readonly log?: Logger) {
    this.maxBytes = Math.max(1024, (nc.info?.max_payload ?? 1024 * 1024) - ENVELOPE);
  }

  readonly emit = (event: unknown): void => {
    if (!this.subject || this.broken) return;
    this.buf.push(event);
    if (this.buf.length >= MAX_BATCH) this.flush();
    else if (!this.pending) this.pending = setImmediate(this.flush);
  };

  readonly flush = (): void => {
    if (this.pending) clearImmediate(this.pending);
    this.pending = undefined;
    if (this.buf.length === 0 || this.broken) return;
    const events = this.buf;
    this.buf = [];
    this.send(events);
  };

  private send(events: unknown[]): void {
    if (this.broken) return;
    const data = encode(events.length === 1
      ? { v: PROTOCOL_VERSION, ok: true, seq: this.seq, event: events[0] }
      : { v: PROTOCOL_VERSION, ok: true, seq: this.seq, events });
    if (data.length > this.maxBytes) {
      if (events.length > 1) {
        // Big events: split rather than exceed the server's max payload.
        const half = Math.ceil(events.length / 2);
        this.send(events.slice(0, half));
        this.send(events.slice(half));
        return;
      }
      return this.tooLarge(`event ${this.seq}`, data.length);
    }
    this.seq += events.length;
    this.publish(data);
  }

  /**
   * Every `ms` in which nothing else was sent, an empty `{seq, events: []}`
   * (old SDKs read it as no events): the caller can then wait on silence
   * rather than on a deadline it does not know (a long Claude turn).
   */
  keepAlive(ms: number): void {
    this.keepAliveTimer = setInterval(() => {
      if (!this.sent && !this.broken) this.publish(encode({ v: PROTOCOL_VERSION, ok: true, seq: this.seq, events: [] }));
      this.sent = false;
    }, ms);
    this.keepAliveTimer.unref();
  }

  /** The last message; `extra` fields go along (a one-shot that parked says on which node). */
  done(result: unknown, extra?: Record<string, unknown>): void {
    clearInterval(this.keepAliveTimer);
    this.flush();
    if (this.broken) return;
    const data = encode({ v: PROTOCOL_VERSION, ok: true, seq: -1, done: true, result, ...extra });
    if (data.length > this.maxBytes) return this.tooLarge('the result', data.length);
    this.publish(data);
  }

  fail(err: unknown): void {
    clearInterval(this.keepAliveTimer);
    this.flush();
    if (this.broken) return;
    this.broken = true;
    this.publish(encode(fail(err)));
  }

  private tooLarge(what: string, size: number): void {
    this.log?.warn('stream message over max_payload, ending the stream', { subject: this.subject, what, size, limit: this.maxBytes });
    this.fail(new ShoalError(ErrorCodes.BAD_REQUEST, `${what} is ${size} bytes, over the NATS max_payload of ${this.maxBytes + ENVELOPE} bytes: ask for less (a smaller limit, fewer properties)`, { details: { reason: 'payload_too_large', size, limit: this.maxBytes } }));
  }

  private publish(data: Uint8Array): void {
    if (!this.subject) return;
    this.sent = true;
    try {
      this.nc.publish(this.subject, data);
    } catch (err) {
      // Connection closed or draining: the caller times out; say so at least.
      this.broken = true;
      this.log?.warn('stream message not sent', { subject: this.subject, err: (err as Error).message });
    }
  }
}
