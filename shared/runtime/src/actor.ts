import type { Msg, NatsConnection, Service, ServiceMsg, Subscription } from 'nats';
import { encode, ErrorCodes, fail, isInboxSubject, ok, ShoalError } from '@shoal/protocol';
import type { Logger } from './log.js';
import { addMeasuredEndpoint, countServiceError, registerService, type ServiceSpec } from './micro.js';
import { Refusals } from './refusals.js';

export type Handler = (msg: Msg) => void | Promise<void>;

/**
 * Base of every Shoal process that listens on NATS. nats.js stops delivering
 * to a subscription whose callback throws (and with it the reading of the whole
 * connection), so every handler goes through `guard`: a sync throw or a
 * rejected promise becomes a typed error reply and a log line, never an escape.
 */
export abstract class Actor {
  protected readonly subs: Subscription[] = [];
  /** Refused messages by reason (for a `shoal_refused_messages_total` metric) and their rate-limited warnings. */
  readonly refusals: Refusals;
  /** This process as a NATS micro service, once `registerMicro` ran. */
  protected micro: Service | undefined;

  constructor(protected readonly nc: NatsConnection, protected readonly log: Logger) {
    this.refusals = new Refusals(log);
  }

  /** Register with NATS's services API; endpoints added later with `endpoint` are listed and measured there. */
  protected async registerMicro(spec: ServiceSpec): Promise<void> {
    const svc = await registerService(this.nc, spec);
    this.micro = svc;
    // nats.js closes the whole service when one of its subscriptions fails (e.g. no permission
    // for `$SRV.>`): the endpoints must not go with it, so they carry on as plain subscriptions.
    void svc.stopped.then((err) => {
      if (this.micro !== svc) return; // stopped by unlisten
      this.micro = undefined;
      this.log.warn('NATS micro service stopped; its endpoints go on as plain subscriptions', { service: spec.name, err: err instanceof Error ? err.message : null });
      for (const e of this.microEndpoints) this.listen(e.subject, e.handler, e.opts);
    });
  }

  /** Endpoints added to the micro service, to re-subscribe them plainly if it stops. */
  private readonly microEndpoints: { subject: string; handler: Handler; opts: { queue?: string } }[] = [];

  /**
   * A request endpoint: a NATS micro endpoint (counted in `$SRV.STATS`) when
   * the service is registered, a plain subscription otherwise. A queue group
   * is always set for micro endpoints (`opts.queue`, else nats.js's `q`), so
   * subjects every replica must answer stay on `listen`.
   */
  protected endpoint(name: string, subject: string, handler: Handler, opts: { queue?: string } = {}): void {
    if (!this.micro) { this.listen(subject, handler, opts); return; }
    this.microEndpoints.push({ subject, handler, opts });
    addMeasuredEndpoint(this.micro, name, { subject, queue: opts.queue }, this.guardAsync(subject, handler));
  }

  /**
   * Like `guard` (and `listen`'s reply rule: an answer only ever goes to an
   * inbox), and hands back the handler's promise (settled, never rejected) so
   * that its time can be measured.
   */
  private guardAsync(subject: string, handler: Handler): (msg: Msg) => Promise<void> | void {
    const onError = (msg: Msg, err: unknown) => this.handlerFailed(subject, msg, err);
    return (msg) => {
      if (msg.reply && !isInboxSubject(msg.reply)) { this.refusals.refuse('reply_not_inbox', { subject: msg.subject, reply: msg.reply.slice(0, 100) }); return; }
      try {
        const r = handler(msg);
        if (r && typeof (r as Promise<void>).then === 'function') return (r as Promise<void>).catch((err) => onError(msg, err));
      } catch (err) {
        onError(msg, err);
      }
    };
  }

  /** Subscribe with a guarded handler. */
  protected listen(subject: string, handler: Handler, opts: { queue?: string } = {}): Subscription {
    const guarded = this.guard(subject, handler);
    const sub = this.nc.subscribe(subject, {
      queue: opts.queue,
      callback: (err, msg) => {
        if (err) { this.log.warn('subscription error', { subject, err: err.message }); return; }
        // No reflection: whatever the request, an answer only ever goes to an inbox.
        if (msg.reply && !isInboxSubject(msg.reply)) { this.refusals.refuse('reply_not_inbox', { subject: msg.subject, reply: msg.reply.slice(0, 100) }); return; }
        guarded(msg);
      },
    });
    this.subs.push(sub);
    return sub;
  }

  /** Wrap a handler so that nothing thrown inside can escape into nats.js. */
  protected guard(subject: string, handler: Handler): (msg: Msg) => void {
    const onError = (msg: Msg, err: unknown) => this.handlerFailed(subject, msg, err);
    return (msg) => {
      try {
        const r = handler(msg);
        if (r && typeof (r as Promise<void>).then === 'function') (r as Promise<void>).catch((err) => onError(msg, err));
      } catch (err) {
        onError(msg, err);
      }
    };
  }

  /** A caller's mistake (bad request, unknown lease...) is not ours: warn, rate-limited, no stack; a bug is an error with its stack. */
  private handlerFailed(subject: string, msg: Msg, err: unknown): void {
    if (err instanceof ShoalError && err.code !== ErrorCodes.INTERNAL) this.refusals.warn(`${err.code}:${subject}`, { subject, code: err.code, err: err.message.slice(0, 200) }, 'request refused');
    else this.log.error('handler failed', { subject, err: err instanceof Error ? err.stack ?? err.message : String(err) });
    this.replyError(msg, err);
  }

  /** Subscriptions are registered with the server only after a flush; announce readiness after it. */
  protected async flushed(): Promise<void> {
    await this.nc.flush();
  }

  protected reply(msg: Msg, data: unknown): void {
    if (!msg.reply) return;
    const bytes = encode(ok(data));
    const max = this.nc.info?.max_payload ?? Infinity;
    // Over the server's limit the publish would throw and the caller would wait for nothing.
    if (bytes.length > max - 4096) {
      this.log.warn('reply over max_payload', { subject: msg.subject, size: bytes.length, max });
      return this.replyError(msg, new ShoalError(ErrorCodes.BAD_REQUEST, `reply of ${bytes.length} bytes is over the NATS max_payload of ${max} bytes`, { details: { reason: 'payload_too_large', size: bytes.length, limit: max } }));
    }
    this.safeRespond(msg, bytes);
  }

  protected replyError(msg: Msg, err: unknown): void {
    if (!msg.reply) return;
    const bytes = encode(fail(err));
    countServiceError(msg, err);
    const sm = msg as Partial<ServiceMsg>;
    // A micro endpoint counts it in `$SRV.STATS` as an error; the body is the usual error reply.
    if (typeof sm.respondError === 'function') {
      try {
        sm.respondError(500, ShoalError.from(err).code, bytes);
        return;
      } catch { /* closed: as below */ }
    }
    this.safeRespond(msg, bytes);
  }

  private safeRespond(msg: Msg, data: Uint8Array): void {
    try {
      msg.respond(data);
    } catch (err) {
      // Connection closed or draining: the caller will time out; nothing else to do.
      this.log.warn('respond failed', { err: (err as Error).message });
    }
  }

  /** Stop listening; messages already delivered are still handled. */
  protected async unlisten(): Promise<void> {
    const micro = this.micro;
    this.micro = undefined;
    await Promise.allSettled([...this.subs.splice(0).map((s) => s.drain()), ...(micro ? [micro.stop()] : [])]);
  }
}
