import { hostname } from 'node:os';
import { encode, ErrorCodes, PROTOCOL_VERSION, readReply, ShoalError, subjects, type Holder, type Lease as LeaseInfo, type Subjects } from '@shoal/protocol';
import { call, connectNats, type NatsConnection, type NatsSettings } from '@shoal/runtime';
import { typed, CancelledError, UnavailableError } from './errors.js';
import { ExecCall } from './stream.js';

export interface ConnectOptions {
  /** NATS servers, e.g. ['nats://127.0.0.1:4222']; or a ready connection in `nc`. */
  servers?: string[];
  nats?: Omit<NatsSettings, 'servers'>;
  nc?: NatsConnection;
  prefix?: string;
  /** Recorded in every lease as its holder, for leak reports. */
  name?: string;
  /**
   * Default acquire deadline. Unset (the default): the request carries none
   * and the pool's `acquire_timeout` applies, as the balancer (or node) has it.
   */
  timeoutMs?: number;
  /**
   * With no deadline given, how long to wait for any answer before giving up
   * with UNAVAILABLE (the balancer answers POOL_TIMEOUT at the pool's
   * `acquire_timeout`; this only bounds a lost request). Default 300000.
   */
  maxWaitMs?: number;
  /** Renew held leases in the background (default true). */
  autoRenew?: boolean;
}

export interface AcquireOptions {
  timeoutMs?: number;
  /** Higher is served first; FIFO within a priority. */
  priority?: number;
  ttlMs?: number;
  signal?: AbortSignal;
  /** Skip the balancer and ask this node directly. */
  nodeId?: string;
}

export interface ExecOptions {
  timeoutMs?: number;
}

/** Leave a little of the caller's deadline for the reply's trip back. */
function serverDeadline(timeoutMs: number): number {
  return Math.max(1, Math.floor(timeoutMs - Math.min(100, timeoutMs * 0.1)));
}

/**
 * A held resource. Operations go straight to the owning node. While held it
 * renews itself at a third of its TTL; `release()` (or `withLease`) ends it.
 */
export class Lease {
  private renewTimer: NodeJS.Timeout | undefined;
  private ended = false;
  /** Set when the lease was lost (renew failed with LEASE_EXPIRED/NOT_FOUND). */
  lost: ShoalError | undefined;

  constructor(private readonly client: Client, readonly info: LeaseInfo, autoRenew: boolean) {
    if (autoRenew) this.scheduleRenew();
  }

  get id(): string { return this.info.leaseId; }
  get nodeId(): string { return this.info.nodeId; }
  get resourceId(): string { return this.info.resourceId; }
  get reused(): boolean { return this.info.reused; }
  /** What the driver says about the resource, e.g. `{ session_id }` for a Claude session. */
  get meta(): Record<string, unknown> | undefined { return this.info.meta; }

  /** Run an operation: `await` it for the result, or `for await` it for streamed events. */
  exec(op: string, args?: unknown, opts: ExecOptions = {}): ExecCall {
    const timeoutMs = opts.timeoutMs ?? Math.max(this.info.ttlMs, 30_000);
    return new ExecCall(this.client.nc, this.client.subjects.leaseExec(this.nodeId), { leaseId: this.id, op, args, timeoutMs: serverDeadline(timeoutMs) }, timeoutMs);
  }

  /** Extend the lease; a new `ttlMs` also changes how often the background renew runs. */
  async renew(ttlMs?: number): Promise<{ expiresAt: number; ttlMs: number }> {
    let r: { expiresAt: number; ttlMs: number };
    try {
      r = await call(this.client.nc, this.client.subjects.leaseRenew(this.nodeId), { leaseId: this.id, ttlMs }, 5000);
    } catch (err) {
      throw typed(err);
    }
    const changed = r.ttlMs !== this.info.ttlMs;
    this.info.ttlMs = r.ttlMs;
    this.info.expiresAt = r.expiresAt;
    if (changed && this.renewTimer && !this.ended) {
      clearTimeout(this.renewTimer);
      this.scheduleRenew();
    }
    return r;
  }

  async release(opts: { reset?: boolean; destroy?: boolean } = {}): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.renewTimer);
    this.client.forget(this);
    try {
      await call(this.client.nc, this.client.subjects.leaseRelease(this.nodeId), { leaseId: this.id, ...opts }, 5000);
    } catch (err) {
      throw typed(err);
    }
  }

  private scheduleRenew(delayMs = Math.max(50, Math.floor(this.info.ttlMs / 3))): void {
    this.renewTimer = setTimeout(() => {
      this.renew().then(
        () => { if (!this.ended) this.scheduleRenew(); },
        (err: ShoalError) => {
          if (err.code === ErrorCodes.LEASE_EXPIRED || err.code === ErrorCodes.LEASE_NOT_FOUND) { this.lost = err; this.ended = true; this.client.forget(this); return; }
          // A transient failure (NATS reconnecting): try again soon, while the TTL still covers us.
          if (!this.ended) this.scheduleRenew(Math.max(50, Math.floor(this.info.ttlMs / 10)));
        },
      );
    }, delayMs);
    this.renewTimer.unref();
  }

  /** Stop renewing without telling the node (used on close). */
  abandon(): void {
    this.ended = true;
    clearTimeout(this.renewTimer);
  }
}

export class Client {
  readonly subjects: Subjects;
  private readonly holder: Holder;
  private readonly held = new Set<Lease>();

  constructor(readonly nc: NatsConnection, private readonly opts: ConnectOptions, private readonly ownsConnection: boolean) {
    this.subjects = subjects(opts.prefix);
    this.holder = { client: opts.name ?? 'shoal-client', host: hostname(), pid: process.pid };
  }

  /**
   * Lease a resource of `pool`: through the balancers (`shoal.<pool>.acquire`),
   * or straight from one node with `nodeId`. Rejects with a typed error.
   */
  async acquire(pool: string, opts: AcquireOptions = {}): Promise<Lease> {
    const given = opts.timeoutMs ?? this.opts.timeoutMs;
    const timeoutMs = given ?? this.opts.maxWaitMs ?? 300_000;
    const subject = opts.nodeId ? this.subjects.nodeAcquire(opts.nodeId) : this.subjects.poolAcquire(pool);
    const body = { pool, timeoutMs: given === undefined ? undefined : serverDeadline(given), priority: opts.priority, ttlMs: opts.ttlMs, holder: this.holder };
    if (opts.signal?.aborted) throw new CancelledError(ErrorCodes.CANCELLED, 'acquire aborted before it was sent');
    const pending = call<LeaseInfo>(this.nc, subject, body, timeoutMs, (late) => this.returnLate(late)).then((info) => this.adopt(info));
    if (!opts.signal) return pending.catch((e) => { throw typed(e); });
    const signal = opts.signal;
    return new Promise<Lease>((resolve, reject) => {
      const onAbort = () => {
        reject(new CancelledError(ErrorCodes.CANCELLED, `acquire on ${pool} aborted`));
        // A lease granted after we gave up goes straight back.
        pending.then((l) => l.release().catch(() => {}), () => {});
      };
      signal.addEventListener('abort', onAbort, { once: true });
      pending.then(
        (l) => { signal.removeEventListener('abort', onAbort); resolve(l); },
        (e) => { signal.removeEventListener('abort', onAbort); reject(typed(e)); },
      );
    });
  }

  /** A lease granted after we stopped waiting goes straight back instead of sitting out its TTL. */
  private returnLate(data: Uint8Array): void {
    try {
      const info = readReply<LeaseInfo>(data);
      this.nc.publish(this.subjects.leaseRelease(info.nodeId), encode({ v: PROTOCOL_VERSION, leaseId: info.leaseId }));
    } catch {
      // An error reply, or not a lease: nothing to give back.
    }
  }

  private adopt(info: LeaseInfo): Lease {
    const lease = new Lease(this, info, this.opts.autoRenew !== false);
    this.held.add(lease);
    return lease;
  }

  /** @internal */
  forget(lease: Lease): void {
    this.held.delete(lease);
  }

  /**
   * Acquire, run `fn`, release — also when `fn` throws. A failed `fn` releases
   * with `reset` so that the next holder does not inherit a half-done state.
   */
  async withLease<T>(pool: string, fn: (lease: Lease) => Promise<T>, opts: AcquireOptions = {}): Promise<T> {
    const lease = await this.acquire(pool, opts);
    let ok = false;
    try {
      const r = await fn(lease);
      ok = true;
      return r;
    } finally {
      await lease.release(ok ? {} : { reset: true }).catch(() => {});
    }
  }

  /** One-shot: acquire + exec + release inside a node. Await for the result or iterate for events. */
  exec(pool: string, op: string, args?: unknown, opts: AcquireOptions = {}): ExecCall {
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs ?? 30_000;
    const subject = opts.nodeId ? this.subjects.nodeExec(opts.nodeId) : this.subjects.poolExec(pool);
    return new ExecCall(this.nc, subject, { pool, op, args, timeoutMs: serverDeadline(timeoutMs), priority: opts.priority, holder: this.holder }, timeoutMs);
  }

  /** Leases this client holds right now. */
  get leases(): Lease[] {
    return [...this.held];
  }

  /** Release every held lease, then close the connection if we opened it. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.held].map((l) => l.release()));
    if (this.ownsConnection) await this.nc.drain().catch(() => {});
  }
}

export async function connect(opts: ConnectOptions = {}): Promise<Client> {
  if (opts.nc) return new Client(opts.nc, opts, false);
  // A service calling connect() wants an answer, not an endless wait for a NATS that is not there.
  let nc: NatsConnection;
  try {
    nc = await connectNats({ servers: opts.servers ?? ['nats://127.0.0.1:4222'], name: opts.name, waitOnFirstConnect: false, ...opts.nats });
  } catch (err) {
    throw new UnavailableError(ErrorCodes.UNAVAILABLE, `cannot connect to NATS at ${(opts.servers ?? ['nats://127.0.0.1:4222']).join(', ')}: ${(err as Error).message}`);
  }
  return new Client(nc, opts, true);
}

export { ShoalError };
