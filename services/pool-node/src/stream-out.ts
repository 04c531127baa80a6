import { encode, fail, PROTOCOL_VERSION } from '@shoal/protocol';
import type { NatsConnection } from '@shoal/runtime';

/** Events in one stream message at most; a Claude answer emits hundreds of small ones. */
const MAX_BATCH = 64;
/** Below NATS's default 1 MB max payload, with room for the envelope. */
const MAX_BYTES = 900 * 1024;

/**
 * The answer stream of one exec. Events emitted in the same turn of the event
 * loop (a driver parsing one stdout chunk emits many at once) go out as one
 * message `{seq, events: [...]}` — a NATS message per event was the cost of a
 * streamed answer. A lone event goes as `{seq, event}`; `seq` is the index of
 * the message's first event. The final message (`done`) or an error flushes
 * what is pending first, so order is kept.
 */
export class StreamOut {
  private seq = 0;
  private buf: unknown[] = [];
  private pending: NodeJS.Immediate | undefined;

  constructor(private readonly nc: NatsConnection, private readonly subject: string | undefined) {}

  readonly emit = (event: unknown): void => {
    if (!this.subject) return;
    this.buf.push(event);
    if (this.buf.length >= MAX_BATCH) this.flush();
    else if (!this.pending) this.pending = setImmediate(this.flush);
  };

  readonly flush = (): void => {
    if (this.pending) clearImmediate(this.pending);
    this.pending = undefined;
    if (this.buf.length === 0) return;
    const events = this.buf;
    this.buf = [];
    this.send(events);
  };

  private send(events: unknown[]): void {
    const data = encode(events.length === 1
      ? { v: PROTOCOL_VERSION, ok: true, seq: this.seq, event: events[0] }
      : { v: PROTOCOL_VERSION, ok: true, seq: this.seq, events });
    if (data.length > MAX_BYTES && events.length > 1) {
      // Rare: big events. Split rather than exceed the server's max payload.
      const half = Math.ceil(events.length / 2);
      this.send(events.slice(0, half));
      this.send(events.slice(half));
      return;
    }
    this.seq += events.length;
    this.publish(data);
  }

  done(result: unknown): void {
    this.flush();
    this.publish(encode({ v: PROTOCOL_VERSION, ok: true, seq: -1, done: true, result }));
  }

  fail(err: unknown): void {
    this.flush();
    this.publish(encode(fail(err)));
  }

  private publish(data: Uint8Array): void {
    if (!this.subject) return;
    try {
      this.nc.publish(this.subject, data);
    } catch {
      // Connection closing: the caller times out; nothing else to do here.
    }
  }
}
