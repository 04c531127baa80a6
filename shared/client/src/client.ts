import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { encode, ErrorCodes, PROTOCOL_VERSION, readReply, RETRYABLE_ON_OTHER_NODE, ShoalError, subjects, type Holder, type Lease as LeaseInfo, type LeaseLostReason, type Subjects } from '@shoal/protocol';
import { call, closeNats, connectNats, type NatsConnection, type NatsSettings } from '@shoal/runtime';
import { typed, CancelledError, UnavailableError } from './errors.js';
import { leaseLost, NodeWatch } from './node-watch.js';
import { ExecCall, serverDeadline } from './stream.js';

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
  /** Renew held leases in the background (default true). Off, a lease is still renewed while an exec runs on it. */
  autoRenew?: boolean;
  /**
   * An exec without a deadline of its own asks the node for a keep-alive
   * this often and fails (UNAVAILABLE) after four silent periods: a long
   * turn lives as long as it streams or the node says it runs. Default 5 s.
   */
  keepAliveMs?: number;
}

export interface AcquireOptions {
  timeoutMs?: number;
  /** Higher is served first; FIFO within a priority. */
  priority?: number;
  ttlMs?: number;
  signal?: AbortSignal;
  /** Skip the balancer and ask this node directly. */
  nodeId?: string;
  /**
   * Per-lease options for the driver, within the pool's allow-list
   * (claude-cli `lease_options`: model, permission_mode,
   * append_system_prompt, allowed_tools, cwd); outside it: BadRequestError.
   */
  options?: Record<string, unknown>;
  /**
   * A parking key: get the resource a release parked under it, context
   * intact, from any client through any balancer (`lease.parked` says
   * `hit`, `resumed` or `gone`).
   */
  park?: string;
}

export interface ExecOptions {
  /** The exec's deadline. Unset: the pool's default for the op (claude-cli `turn_timeout`), none for others; the call waits as long as the node says it runs. */
  timeoutMs?: number;
}

export interface OneShotOptions extends AcquireOptions {
  /** The operation's own deadline once a resource is held (`timeoutMs` bounds the wait for one). Unset: as for `ExecOptions.timeoutMs`. */
  execTimeoutMs?: number;
}

const DEFAULT_KEEPALIVE_MS = 5_000;
/** Silent keep-alive periods after which a running exec's node is taken for gone. */
const KEEPALIVE_MISSES = 4;

/** After our own reconnect, how long a node's "no responders" is not taken as its death (it may still be reconnecting). */
const RECONNECT_GRACE_MS = 3000;

/** Between two sends of an acquire that found nobody on its subject just after our reconnect. */
const RECONNECT_RETRY_MS = 50;

/** Keys this client remembers the node of (where it parked them); the oldest is forgotten beyond. */
const PARKED_ON_MAX = 10_000;


/**
 * How a lease nobody will use goes back: a keyed one that holds the key's
 * conversation (a hit, or resumed) is parked again under the key, so that
 * a late or aborted acquire does not throw the context away.
 */
/** Where the client remembers the node a key of a pool is parked on. */
const parkedSlot = (pool: string, key: string): string => `${pool}\u0000${key}`;

function keepParked(info: LeaseInfo, park: string | undefined): { park?: string } {
  return park !== undefined && (info.park === 'hit' || info.park === 'resumed') ? { park } : {};
}

/**
 * A held resource. Operations go straight to the owning node. While held it
 * renews itself at a third of its TTL; `release()` (or `withLease`) ends it.
 *
 * When the lease is lost (its node died, restarted, drained past its grace,
 * or reclaimed it; or a renew found it gone) `lost` is set to a LEASE_LOST
 * error, the `lost` event fires with it, `signal` aborts with it, and every
 * `exec` still running on it rejects with it at once.
 */
/**
 * The node's own answer about a lease (a renew's or an exec's LEASE_EXPIRED /
 * LEASE_NOT_FOUND) as the SDK's one LEASE_LOST, with a reason from the
 * documented set: expired is the TTL; not found means the node ended it
 * without telling (released or revoked behind the holder's back). The node's
 * code stays in `details.cause`.
 */
function lostFrom(lease: { id: string; nodeId: string }, err: ShoalError): ShoalError {
  const reason: LeaseLostReason = err.code === ErrorCodes.LEASE_EXPIRED ? 'expired' : 'revoked';
  return leaseLost(lease, reason, err.message, { cause: err.code });
}

export class Lease extends EventEmitter<{ lost: [ShoalError] }> {
  private renewTimer: NodeJS.Timeout | undefined;
  private ended = false;
  private readonly ac = new AbortController();
  /** Execs running on this lease: failed at once if it is lost; while any runs, the lease is renewed even without autoRenew. */
  private readonly running = new Set<ExecCall>();
  /** Set (a LEASE_LOST error) when the lease was lost. */
  lost: ShoalError | undefined;

  constructor(private readonly client: Client, readonly info: LeaseInfo, private readonly autoRenew: boolean) {
    super();
    this.localExpiry = Date.now() + info.ttlMs;
    if (autoRenew) this.scheduleRenew();
  }

  /** Aborts (with the LEASE_LOST error) when the lease is lost: pass it to work that must stop then. */
  get signal(): AbortSignal { return this.ac.signal; }
  /** @internal */
  get nodeStartedAt(): number | undefined { return this.info.nodeStartedAt; }

  /** @internal End the lease as lost: once, whoever notices first. */
  markLost(err: ShoalError): void {
    if (this.lost || this.ended) return;
    this.lost = err.code === ErrorCodes.LEASE_LOST ? err : lostFrom(this, err);
    this.ended = true;
    clearTimeout(this.renewTimer);
    this.client.forget(this);
    for (const call of this.running) call.fail(this.lost);
    this.running.clear();
    this.ac.abort(this.lost);
    if (this.listenerCount('lost') > 0) this.emit('lost', this.lost);
  }

  /** @internal A renew that only asks whether the node still has the lease. */
  check(timeoutMs: number): Promise<unknown> {
    return call(this.client.nc, this.client.subjects.leaseRenew(this.nodeId), { leaseId: this.id, secret: this.info.secret }, timeoutMs);
  }

  get id(): string { return this.info.leaseId; }
  get nodeId(): string { return this.info.nodeId; }
  get resourceId(): string { return this.info.resourceId; }
  get reused(): boolean { return this.info.reused; }
  /** What the driver says about the resource, e.g. `{ session_id }` for a Claude session. */
  get meta(): Record<string, unknown> | undefined { return this.info.meta; }
  /** For an acquire with `park`: `hit` (context intact), `resumed` (continued from the shared store) or `gone`. */
  get parked(): 'hit' | 'resumed' | 'gone' | undefined { return this.info.park; }

  /** Run an operation: `await` it for the result, or `for await` it for streamed events. */
  exec(op: string, args?: unknown, opts: ExecOptions = {}): ExecCall {
    const subject = this.client.subjects.leaseExec(this.nodeId);
    let c: ExecCall;
    if (opts.timeoutMs !== undefined) {
      c = new ExecCall(this.client.nc, subject, { leaseId: this.id, secret: this.info.secret, op, args, timeoutMs: serverDeadline(opts.timeoutMs) }, opts.timeoutMs);
    } else {
      const ka = this.client.keepAliveMs;
      c = new ExecCall(this.client.nc, subject, { leaseId: this.id, secret: this.info.secret, op, args, keepAliveMs: ka }, ka * KEEPALIVE_MISSES, ka * KEEPALIVE_MISSES);
    }
    if (this.lost) { c.fail(this.lost); return c; }
    this.running.add(c);
    // A long exec must not lose its lease for want of a renew.
    if (this.running.size === 1 && !this.autoRenew && !this.ended) this.scheduleRenew();
    void c.result.then(() => this.execEnded(c), (e: unknown) => {
      this.execEnded(c);
      // The node answering that it no longer has the lease is the lease lost, not just this call failed.
      const code = (e as ShoalError).code;
      if (code === ErrorCodes.LEASE_NOT_FOUND || code === ErrorCodes.LEASE_EXPIRED) this.markLost(e as ShoalError);
    });
    return c;
  }

  private execEnded(c: ExecCall): void {
    this.running.delete(c);
    if (this.running.size === 0 && !this.autoRenew) clearTimeout(this.renewTimer);
  }

  /** Extend the lease; a new `ttlMs` also changes how often the background renew runs. */
  /** Our own clock's idea of the TTL's end (the node's `expiresAt` is on its clock). */
  private localExpiry: number;

  async renew(ttlMs?: number): Promise<{ expiresAt: number; ttlMs: number }> {
    let r: { expiresAt: number; ttlMs: number };
    const sentAt = Date.now();
    try {
      r = await call(this.client.nc, this.client.subjects.leaseRenew(this.nodeId), { leaseId: this.id, secret: this.info.secret, ttlMs }, 5000);
    } catch (err) {
      throw typed(err);
    }
    this.localExpiry = sentAt + r.ttlMs;
    const changed = r.ttlMs !== this.info.ttlMs;
    this.info.ttlMs = r.ttlMs;
    this.info.expiresAt = r.expiresAt;
    if (changed && this.renewTimer && !this.ended) {
      clearTimeout(this.renewTimer);
      this.scheduleRenew();
    }
    return r;
  }

  /** `park: key` keeps the resource with its context for a later `acquire(pool, {park: key})` (instead of a reset). */
  async release(opts: { reset?: boolean; destroy?: boolean; park?: string } = {}): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.renewTimer);
    this.client.forget(this);
    let reply: { parked?: boolean };
    try {
      reply = await call<{ parked?: boolean }>(this.client.nc, this.client.subjects.leaseRelease(this.nodeId), { leaseId: this.id, secret: this.info.secret, ...opts }, 5000);
    } catch (err) {
      throw typed(err);
    }
    // Only where it parks (not with max_parked 0, nor on a draining node): else every next acquire would pay a NOT_PARKED trip.
    if (opts.park !== undefined && reply.parked === true) this.client.parkedOn(this.info.pool, opts.park, this.nodeId);
  }

  private scheduleRenew(delayMs = Math.max(50, Math.floor(this.info.ttlMs / 3))): void {
    this.renewTimer = setTimeout(() => {
      this.renew().then(
        () => { if (!this.ended && (this.autoRenew || this.running.size > 0)) this.scheduleRenew(); },
        (err: ShoalError) => {
          if (this.ended) return;
          if (err.code === ErrorCodes.LEASE_EXPIRED || err.code === ErrorCodes.LEASE_NOT_FOUND) { this.markLost(err); return; }
          // No responders: nobody serves the node's subjects, the node is gone (a renew loop would never end)
          // — unless our own connection just came back and the node's may not have yet.
          if (err.details?.reason === 'no_responders' && !this.client.justReconnected()) { this.markLost(leaseLost(this, 'node_gone', `node ${this.nodeId} does not answer (no responders)`)); return; }
          // Past the TTL the node has reclaimed it anyway, whatever kept us from renewing.
          if (Date.now() >= this.localExpiry) { this.markLost(leaseLost(this, 'expired', `could not renew before its TTL ran out: ${err.message}`)); return; }
          // A transient failure (NATS reconnecting): try again soon, while the TTL still covers us.
          if (this.autoRenew || this.running.size > 0) this.scheduleRenew(Math.max(50, Math.floor(this.info.ttlMs / 10)));
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
  /** One watch per node we hold leases on (lease events, heartbeats): how we learn that leases are lost. */
  private readonly watches = new Map<string, NodeWatch>();
  private reconnectedAt = 0;
  /**
   * Where this client parked each key (`<pool>\0<key>` → node), oldest
   * first: its next acquire with the key asks that node first. The release's
   * reply comes before a heartbeat could tell the balancers, so through them
   * the acquire could miss.
   */
  private readonly parked = new Map<string, string>();

  /** @internal */
  readonly keepAliveMs: number;

  constructor(readonly nc: NatsConnection, private readonly opts: ConnectOptions, private readonly ownsConnection: boolean) {
    this.keepAliveMs = opts.keepAliveMs ?? DEFAULT_KEEPALIVE_MS;
    this.subjects = subjects(opts.prefix);
    this.holder = { client: opts.name ?? 'shoal-client', host: hostname(), pid: process.pid };
    void this.watchConnection();
  }

  private async watchConnection(): Promise<void> {
    try {
      for await (const st of this.nc.status()) if (st.type === 'reconnect') this.reconnectedAt = Date.now();
    } catch {
      // The connection closed: nothing left to watch.
    }
  }

  /** @internal Within a few seconds of our own reconnect, a node's "no responders" may only mean it has not reconnected yet. */
  justReconnected(): boolean {
    return Date.now() - this.reconnectedAt < RECONNECT_GRACE_MS;
  }

  /** @internal A release parked `key` on `nodeId`. */
  parkedOn(pool: string, key: string, nodeId: string): void {
    const k = parkedSlot(pool, key);
    this.parked.delete(k);
    this.parked.set(k, nodeId);
    if (this.parked.size > PARKED_ON_MAX) this.parked.delete(this.parked.keys().next().value!);
  }

  /**
   * The node this client parked `opts.park` on, if any (not when the caller
   * names a node), forgotten as it is used: the next release or one-shot
   * with the key says where it is next.
   */
  private takeParked(pool: string, opts: { park?: string; nodeId?: string }): string | undefined {
    if (opts.park === undefined || opts.nodeId) return undefined;
    const slot = parkedSlot(pool, opts.park);
    const nodeId = this.parked.get(slot);
    this.parked.delete(slot);
    return nodeId;
  }

  /**
   * Lease a resource of `pool`: through the balancers (`shoal.<pool>.acquire`),
   * or straight from one node with `nodeId`. Rejects with a typed error.
   *
   * With `park` for a key this client parked itself, the node it parked on is
   * asked first, directly (`onlyParked`: one hop, and a hit even if the
   * release is still being finished there); if the key is not there any more
   * (NOT_PARKED), or that node cannot answer, through the balancers.
   */
  async acquire(pool: string, opts: AcquireOptions = {}): Promise<Lease> {
    const given = opts.timeoutMs ?? this.opts.timeoutMs;
    const timeoutMs = given ?? this.opts.maxWaitMs ?? 300_000;
    const subject = opts.nodeId ? this.subjects.nodeAcquire(opts.nodeId) : this.subjects.poolAcquire(pool);
    const body = { pool, timeoutMs: undefined as number | undefined, priority: opts.priority, ttlMs: opts.ttlMs, holder: this.holder, options: opts.options, park: opts.park };
    if (opts.signal?.aborted) throw new CancelledError(ErrorCodes.CANCELLED, 'acquire aborted before it was sent');
    const deadline = Date.now() + timeoutMs;
    const parkedNode = this.takeParked(pool, opts);
    const send = async (): Promise<LeaseInfo> => {
      if (parkedNode !== undefined) {
        const left = deadline - Date.now();
        try {
          return await call<LeaseInfo>(this.nc, this.subjects.nodeAcquire(parkedNode), { ...body, timeoutMs: given === undefined ? undefined : serverDeadline(left), onlyParked: true }, left, (late) => this.returnLate(late, opts.park));
        } catch (e) {
          const err = ShoalError.from(e);
          const elsewhere = err.code === ErrorCodes.NOT_PARKED || RETRYABLE_ON_OTHER_NODE.has(err.code);
          if (!elsewhere || opts.signal?.aborted || deadline - Date.now() <= 0) throw e;
        }
      }
      for (;;) {
        const left = deadline - Date.now();
        body.timeoutMs = given === undefined ? undefined : serverDeadline(left);
        try {
          return await call<LeaseInfo>(this.nc, subject, body, left, (late) => this.returnLate(late, opts.park));
        } catch (e) {
          // Just after our own reconnect, nobody on the subject may only mean the balancers (or the node) have not
          // reconnected yet: wait for them within the deadline, as a balancer waits for its nodes, rather than fail.
          const err = ShoalError.from(e);
          const wait = Math.min(RECONNECT_RETRY_MS, deadline - Date.now() - RECONNECT_RETRY_MS);
          if (err.details?.reason !== 'no_responders' || !this.justReconnected() || opts.signal?.aborted || wait <= 0) throw e;
          await sleep(wait);
        }
      }
    };
    const pending = send().then((info) => this.adopt(info));
    if (!opts.signal) return pending.catch((e) => { throw typed(e); });
    const signal = opts.signal;
    return new Promise<Lease>((resolve, reject) => {
      const onAbort = () => {
        reject(new CancelledError(ErrorCodes.CANCELLED, `acquire on ${pool} aborted`));
        // A lease granted after we gave up goes straight back (parked again if it holds the key's context).
        pending.then((l) => l.release(keepParked(l.info, opts.park)).catch(() => {}), () => {});
      };
      signal.addEventListener('abort', onAbort, { once: true });
      pending.then(
        (l) => { signal.removeEventListener('abort', onAbort); resolve(l); },
        (e) => { signal.removeEventListener('abort', onAbort); reject(typed(e)); },
      );
    });
  }

  /** A lease granted after we stopped waiting goes straight back instead of sitting out its TTL. */
  private returnLate(data: Uint8Array, park: string | undefined): void {
    try {
      const info = readReply<LeaseInfo>(data);
      this.nc.publish(this.subjects.leaseRelease(info.nodeId), encode({ v: PROTOCOL_VERSION, leaseId: info.leaseId, secret: info.secret, ...keepParked(info, park) }));
    } catch {
      // An error reply, or not a lease: nothing to give back.
    }
  }

  private adopt(info: LeaseInfo): Lease {
    const lease = new Lease(this, info, this.opts.autoRenew !== false);
    this.held.add(lease);
    let w = this.watches.get(info.nodeId);
    if (!w) {
      const nodeId = info.nodeId;
      w = new NodeWatch(this.nc, this.subjects, nodeId, () => { if (this.watches.get(nodeId) === w) this.watches.delete(nodeId); }, () => this.justReconnected());
      this.watches.set(nodeId, w);
    }
    w.add(lease);
    return lease;
  }

  /** @internal */
  forget(lease: Lease): void {
    this.held.delete(lease);
    this.watches.get(lease.nodeId)?.remove(lease.id);
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

  /**
   * One-shot: acquire + exec + release inside a node. Await for the result or
   * iterate for events. `timeoutMs` bounds the wait for a resource; the
   * operation then runs until `execTimeoutMs`, or the pool's default for the
   * op (claude-cli `turn_timeout`), for as long as the node keeps saying so.
   */
  exec(pool: string, op: string, args?: unknown, opts: OneShotOptions = {}): ExecCall {
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs ?? 30_000;
    const subject = opts.nodeId ? this.subjects.nodeExec(opts.nodeId) : this.subjects.poolExec(pool);
    const idle = this.keepAliveMs * KEEPALIVE_MISSES;
    const deadline = opts.execTimeoutMs !== undefined ? { execTimeoutMs: opts.execTimeoutMs } : { keepAliveMs: this.keepAliveMs };
    const body = { pool, op, args, timeoutMs: serverDeadline(timeoutMs), priority: opts.priority, holder: this.holder, options: opts.options, park: opts.park, ...deadline };
    const wait = opts.execTimeoutMs !== undefined ? timeoutMs + opts.execTimeoutMs : timeoutMs + idle;
    const idleMs = opts.execTimeoutMs !== undefined ? undefined : idle;
    // A key this client parked: its node first (onlyParked), the balancers if it is not there.
    const parkedNode = this.takeParked(pool, opts);
    const c = parkedNode !== undefined
      ? new ExecCall(this.nc, this.subjects.nodeExec(parkedNode), { ...body, onlyParked: true }, wait, idleMs, { subject, body })
      : new ExecCall(this.nc, subject, body, wait, idleMs);
    // Parked again after it ran: remember where, for the key's next call.
    if (opts.park !== undefined) void c.result.then(() => { if (c.nodeId !== undefined) this.parkedOn(pool, opts.park!, c.nodeId); }, () => {});
    return c;
  }

  /** Leases this client holds right now. */
  get leases(): Lease[] {
    return [...this.held];
  }

  /**
   * Release every held lease, then close the connection if we opened it (also
   * when NATS is unreachable): calls still waiting on it (an acquire, an exec)
   * fail at once with UNAVAILABLE (`closed`), and nothing of the client keeps
   * the process alive. Safe to call more than once, concurrently too: every
   * call resolves when the one close is done.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.held].map((l) => l.release()));
      if (this.ownsConnection) await closeNats(this.nc);
    })();
    return this.closing;
  }

  private closing: Promise<void> | undefined;
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
