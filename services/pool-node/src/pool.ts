import { defaultMaxConcurrentCreates, type PoolConfig } from '@shoal/config';
import { BACKEND_DOWN, describePool, ErrorCodes, newId, newLeaseId, newLeaseSecret, parkKeyHash, sameSecret, ShoalError, type Holder, type Lease, type PoolNumbers } from '@shoal/protocol';
import type { Clock, Timer } from './clock.js';
import type { Driver } from './driver.js';
import { PoolMeter } from './stats.js';

/**
 * One pool's whole state machine: its resources, leases and wait queue.
 *
 *   Creating → Ready(idle) → Active(leased) → Returning(reset, validate) → Ready
 *                                        ↘ expired / failed / over limits → Destroying → gone
 *
 * A release with a parking key takes the Returning path too and ends in the
 * parked map instead of Ready; from the release on, the key names it
 * (`returning`), so a keyed acquire that comes before it is parked waits
 * for it rather than missing. The newest release of a key is the one it
 * names: an older context (parked, or still returning) is reset.
 *
 * Everything here runs on one event loop and is changed only through the
 * public methods (called by the node's message handlers) and the pool's own
 * timers. Every pending acquire has a deadline timer (a keyed one waiting for
 * its resource to come back too), and drain and close refuse both kinds at
 * once; every lease has a TTL timer; every create has a timeout. Nothing
 * here knows about NATS.
 */

/**
 * The part of @shoal/config's PoolConfig the pool reads (named from it, so the
 * two cannot drift; a subset, so tests build only what the pool uses).
 */
/** A driver that ends its own execs at their deadline gets this long before the pool aborts them. */
const EXEC_DEADLINE_BACKSTOP_MS = 2_000;

export type PoolSettings = Pick<PoolConfig, 'name' | 'minSize' | 'maxSize' | 'initialSize' | 'maxWaitingClients' | 'acquireTimeoutMs' | 'leaseTtlMs' | 'weight' | 'sessionManagement' | 'create'> & {
  resourceLimits: Pick<PoolConfig['resourceLimits'], 'maxMemoryPerSessionBytes' | 'maxTotalMemoryBytes'>;
  /** Period of the backend probe (`load_balancing.health_check_interval`); 0 or unset = no probe timer. */
  probeIntervalMs?: number;
  /** Unset: the driver kind's default. */
  maxConcurrentCreates?: number;
};

/**
 * Creates started in one go; more wait for the next turn of the event loop,
 * so that a large `max_concurrent_creates` never blocks it (a scale to
 * 10,000 once took 141 ms of one turn).
 */
const CREATE_CHUNK = 64;

type State = 'creating' | 'ready' | 'active' | 'returning' | 'destroying';

interface Resource<R> {
  id: string;
  handle: R | undefined;
  state: State;
  createdAt: number;
  /** Max lifetime with jitter applied, so a pool warmed at once does not expire at once. */
  expiresAt: number;
  /** When it last became idle. */
  idleSince: number;
  lastValidatedAt: number;
  useCount: number;
  /** Per-lease options were applied: restore the pool's defaults when it comes back. */
  customized?: boolean;
  /** Parked under this key (its context kept), since `parkedAt`: not idle, but evictable. */
  parkedKey?: string;
  /** The key's hash as heartbeats carry it, computed once when parked. */
  parkedHash?: string;
  parkedAt?: number;
}

interface LeaseRec {
  id: string;
  /** Only the holder got it; lease operations must show it (see `authorized`). */
  secret: string;
  resource: Resource<unknown>;
  holder: Holder | undefined;
  grantedAt: number;
  expiresAt: number;
  ttlMs: number;
  reused: boolean;
  timer: Timer | undefined;
  /** Execs running on this lease, aborted if the lease ends under them. */
  execs: Set<AbortController>;
  /** The drivers' exec promises themselves: a returned resource waits until they have stopped. */
  running: Set<Promise<unknown>>;
}

/** A release with a parking key, from the release until its return is over; a newer release of the key replaces it. */
interface Returning<R> { r: Resource<R>; waiters: ParkWaiter[] }

/** A keyed acquire waiting for the resource its key names to finish returning to park. */
interface ParkWaiter {
  opts: AcquireOptions;
  timer: Timer | undefined;
  resolve: (lease: Lease | undefined) => void;
  reject: (err: ShoalError) => void;
}

interface Waiter {
  id: string;
  priority: number;
  enqueuedAt: number;
  deadline: number;
  ttlMs: number;
  holder: Holder | undefined;
  timer: Timer | undefined;
  resolve: (lease: Lease) => void;
  reject: (err: ShoalError) => void;
}

export interface AcquireOptions {
  timeoutMs?: number;
  priority?: number;
  ttlMs?: number;
  holder?: Holder;
}

export interface ReleaseOptions {
  reset?: boolean;
  destroy?: boolean;
  /** Keep the resource's context under this key for a later acquire with it (a parked conversation). */
  park?: string;
}

/** Observations for metrics and logs; the pool itself knows no Prometheus. */
export interface PoolObserver {
  op(operation: string, result: string, ms?: number): void;
  leaseExpired(info: { leaseId: string; resourceId: string; holder: Holder | undefined; heldMs: number }): void;
  /** A lease ended without its holder asking (expired, revoked by a drain or close): the node announces it. */
  leaseLost?(leaseId: string, how: 'expired' | 'revoked'): void;
  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
}

const noopObserver: PoolObserver = { op() {}, leaseExpired() {}, log() {} };

/** Ended lease ids remembered (per generation, two generations) to tell LEASE_EXPIRED from LEASE_NOT_FOUND. */
const ENDED_MEMORY = 4096;

export class Pool<R = unknown> {
  readonly name: string;
  readonly meter: PoolMeter;
  private readonly resources = new Map<string, Resource<R>>();
  /** Idle resources, most recently returned last: taken LIFO so hot ones stay hot and cold ones age out. */
  private readonly idle: Resource<R>[] = [];
  private readonly leases = new Map<string, LeaseRec>();
  /** Parked resources by key, oldest first (Map order): idle capacity with a context, evicted oldest first. */
  private readonly parked = new Map<string, Resource<R>>();
  /**
   * Released with a key and still being returned (execs stopping,
   * validation): the key's resource and the keyed acquires waiting for it.
   * Set by the release itself, so a holder's next acquire with the key
   * (answered after the release) finds it here or parked, never missing.
   */
  private readonly returning = new Map<string, Returning<R>>();
  /** Parked resources being reset for waiters. */
  private evicting = 0;
  /** Wait queue: buckets by priority, highest first, FIFO inside a bucket. */
  private readonly queue: { priority: number; waiters: Waiter[] }[] = [];
  private waitingCount = 0;
  private creating = 0;
  private target: number;
  /** Leased resources to destroy on return because a scale-down could not take enough idle ones. */
  private toShed = 0;
  private createFailures = 0;
  private lastCreateError: ShoalError | undefined;
  private retryTimer: Timer | undefined;
  private retryAt = 0;
  private cleanupTimer: Timer | undefined;
  /** The next chunk of creates, when one turn started as many as it may. */
  private chunkTimer: Timer | undefined;
  /** Resolved when no create is in flight (warm-up done, or stopped by a failure's backoff). */
  private settledWaiters: (() => void)[] = [];
  /** Two generations: the newer is swapped for a fresh map when full, an O(1) way to forget the oldest. */
  private ended = new Map<string, EndedHow>();
  private endedOld = new Map<string, EndedHow>();
  /** Resources being destroyed: `live` is resources.size minus these, kept as a count (it is read on every create). */
  private destroying = 0;
  private closed = false;
  /** Creates and destroys under way, so that close() can wait for them. */
  private readonly inFlight = new Set<Promise<void>>();
  private draining = false;
  /**
   * The backend is known down (creates failing with nothing to lease, a
   * failed probe, an op that found it unreachable): acquires are refused at
   * once with this error instead of waiting out their deadline.
   */
  private down: { err: ShoalError; since: number } | undefined;
  private probeTimer: Timer | undefined;
  private probing = false;
  /** Probes since the pool went down: they come sooner than the interval at first (retry_base, doubling up to it). */
  private downProbes = 0;
  /** Where a drain is: leases may still come back (`grace`), resources being destroyed, all gone (`drained`), or closed for good. */
  private drainPhase: 'grace' | 'destroying' | 'drained' | 'closed' | undefined;
  /** Bumped by `undrain`, so that a drain waiting out its grace period stops there. */
  private drainGen = 0;

  constructor(
    private readonly cfg: PoolSettings,
    private readonly driver: Driver<R>,
    private readonly clock: Clock,
    private readonly random: () => number = Math.random,
    private readonly observer: PoolObserver = noopObserver,
  ) {
    this.name = cfg.name;
    this.target = clamp(cfg.initialSize, cfg.minSize, cfg.maxSize);
    this.meter = new PoolMeter(clock);
  }

  get kind(): string {
    return this.driver.kind;
  }

  // ---- lifecycle ---------------------------------------------------------

  /**
   * Warm up to the initial size, `max_concurrent_creates` at a time, and
   * start the cleanup cycle. Resolves when no create is in flight any more:
   * warm, or stopped by a failing create's backoff.
   */
  async start(): Promise<void> {
    this.scheduleCleanup();
    this.scheduleProbe();
    this.replenish('warmup');
    await this.createsSettled();
  }

  /** Creates in flight at most, on this node, for this pool. */
  get maxConcurrentCreates(): number {
    return this.cfg.maxConcurrentCreates ?? defaultMaxConcurrentCreates(this.driver.kind);
  }

  private createsSettled(): Promise<void> {
    if (this.creating === 0 && this.chunkTimer === undefined) return Promise.resolve();
    return new Promise((resolve) => this.settledWaiters.push(resolve));
  }

  private notifySettled(): void {
    if (this.creating > 0 || this.chunkTimer !== undefined || this.settledWaiters.length === 0) return;
    for (const w of this.settledWaiters.splice(0)) w();
  }

  /**
   * Stop taking acquires, let leases finish until `graceMs`, then revoke what
   * is left and destroy everything. Resolves when no resource is left.
   */
  async drain(graceMs: number): Promise<{ revoked: number; cancelled?: boolean }> {
    this.draining = true;
    this.drainPhase = 'grace';
    const gen = ++this.drainGen;
    this.rejectAllWaiters(() => new ShoalError(ErrorCodes.NODE_DRAINING, `pool ${this.name} is draining`));
    this.rejectParkWaiters('draining');
    const deadline = this.clock.now() + graceMs;
    while (this.leases.size > 0 && this.clock.now() < deadline && gen === this.drainGen) {
      await new Promise<void>((r) => this.clock.setTimeout(r, Math.min(50, deadline - this.clock.now())));
    }
    if (gen !== this.drainGen) return { revoked: 0, cancelled: true };
    this.drainPhase = 'destroying';
    let revoked = 0;
    for (const lease of [...this.leases.values()]) {
      revoked++;
      this.endLease(lease, 'revoked');
      void this.destroy(lease.resource as Resource<R>, 'drain'); // tracked: close() below waits for it
    }
    await this.close();
    this.drainPhase = 'drained';
    return { revoked };
  }

  /** Whether `undrain` would work now: not while a drain is destroying, nor after `close`. */
  get undrainable(): boolean {
    return !this.draining || this.drainPhase === 'grace' || this.drainPhase === 'drained';
  }

  /**
   * Leave draining. Within the grace period the drain just stops: leases
   * and resources are kept. After the drain has destroyed everything, the
   * pool starts again and warms up to its target. Refused (false) while the
   * drain is destroying, or after `close` (the process is stopping).
   */
  undrain(): 'resumed' | 'restarted' | 'not_draining' | false {
    if (!this.draining) return 'not_draining';
    if (this.drainPhase === 'grace') {
      this.drainGen++;
      this.draining = false;
      this.drainPhase = undefined;
      this.replenish();
      return 'resumed';
    }
    if (this.drainPhase === 'drained') {
      this.closed = false;
      this.draining = false;
      this.drainPhase = undefined;
      this.scheduleCleanup();
      // A probe still in flight schedules the next itself when it ends.
      if (!this.probing) this.scheduleProbe();
      this.replenish();
      return 'restarted';
    }
    return false;
  }

  /** Destroy every resource now and cancel every timer. */
  async close(): Promise<void> {
    if (this.drainPhase !== 'destroying') this.drainPhase = 'closed';
    this.draining = true;
    this.closed = true;
    this.clock.clearTimeout(this.cleanupTimer);
    // Cleared and forgotten: a restart (undrain) tests these to know whether one is pending.
    this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.clock.clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    this.clock.clearTimeout(this.chunkTimer);
    this.chunkTimer = undefined;
    this.rejectAllWaiters(() => new ShoalError(ErrorCodes.NODE_DRAINING, `pool ${this.name} is closed`));
    this.rejectParkWaiters('closed');
    // Every resource is destroyed below: no return will park, nothing is named by a key any more.
    this.returning.clear();
    for (const lease of [...this.leases.values()]) this.endLease(lease, 'revoked');
    const pending: Promise<void>[] = [];
    for (const r of [...this.resources.values()]) if (r.state !== 'creating' && r.state !== 'destroying') pending.push(this.destroy(r, 'close'));
    // Creates still in flight destroy their result when they land (closed is set); wait for
    // them and for destroys under way, but never longer than a create may take.
    let cap: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...pending, ...this.inFlight]),
      new Promise<void>((r) => { cap = setTimeout(r, this.cfg.create.timeoutMs); cap.unref?.(); }),
    ]);
    clearTimeout(cap);
  }

  // ---- acquire -----------------------------------------------------------

  /**
   * The fast path: a lease now if a resource is idle, else undefined (and
   * nothing counted). Synchronous, so that a node can answer without a
   * promise chain; `acquire` does the rest.
   */
  tryAcquire(opts: AcquireOptions = {}): Lease | undefined {
    if (this.draining || this.idle.length === 0 || this.down) return undefined;
    const r = this.takeIdle();
    if (!r) return undefined;
    this.meter.request();
    const lease = this.grant(r, opts.ttlMs ?? this.cfg.leaseTtlMs, opts.holder);
    this.meter.acquired(0, lease.reused);
    this.observer.op('acquire', 'success', 0);
    return lease;
  }

  /**
   * The resource parked under `key`, leased as it is (context intact), or
   * undefined. Synchronous, like tryAcquire: a hit costs no extra hop.
   * (While a release of the key is still returning, nothing is parked
   * under it: that release reset the older context.)
   */
  claimParked(key: string, opts: AcquireOptions = {}): Lease | undefined {
    const r = this.parked.get(key);
    if (!r || this.draining) return undefined;
    this.parked.delete(key);
    r.parkedKey = undefined;
    this.meter.request();
    const lease = this.grant(r, opts.ttlMs ?? this.cfg.leaseTtlMs, opts.holder);
    this.meter.acquired(0, lease.reused);
    this.observer.op('acquire', 'success', 0);
    return lease;
  }

  /**
   * For a key whose resource is still returning to park (released a moment
   * ago): a promise of it once parked, leased as claimParked would; of
   * undefined if that return does not park it (destroyed, reset, the pool
   * draining) or another acquire claims it first. Undefined at once when no
   * resource is returning under the key. Bounded by the acquire's deadline
   * (POOL_TIMEOUT), though a return is bounded by the create timeout anyway.
   */
  parkedSoon(key: string, opts: AcquireOptions = {}): Promise<Lease | undefined> {
    const entry = this.returning.get(key);
    if (!entry || this.draining) return Promise.resolve(undefined);
    const timeoutMs = opts.timeoutMs ?? this.cfg.acquireTimeoutMs;
    return new Promise<Lease | undefined>((resolve, reject) => {
      const w: ParkWaiter = { opts, timer: undefined, resolve, reject };
      w.timer = this.clock.setTimeout(() => {
        // The entry may have been taken over by a newer release of the key: the waiters went with it.
        const ws = this.returning.get(key)?.waiters;
        const at = ws ? ws.indexOf(w) : -1;
        if (at < 0) return;
        ws!.splice(at, 1);
        this.meter.request();
        reject(this.refused(ErrorCodes.POOL_TIMEOUT, `pool ${this.name}: the resource parked under the key was still returning after ${timeoutMs} ms`, 'timeout'));
      }, timeoutMs);
      entry.waiters.push(w);
    });
  }

  /**
   * A keyed acquire's first step: the key's parked resource, at once, or the
   * one a release of the key is still returning, waited for. A miss comes
   * with the options for a fresh acquire, whose `timeoutMs` is what is left
   * of the caller's deadline: a wait for a return that did not park (stuck,
   * invalid) is not paid a second time.
   */
  async claimKeyed(key: string, opts: AcquireOptions = {}): Promise<{ lease: Lease | undefined; rest: AcquireOptions }> {
    const deadline = this.clock.now() + (opts.timeoutMs ?? this.cfg.acquireTimeoutMs);
    const lease = this.claimParked(key, opts) ?? await this.parkedSoon(key, opts);
    return { lease, rest: { ...opts, timeoutMs: Math.max(1, deadline - this.clock.now()) } };
  }

  /** Whether a release with `park` parks here (`max_parked` > 0). */
  get parks(): boolean {
    return this.cfg.sessionManagement.maxParked > 0;
  }

  /** The key a release with these options parks under, if it parks at all. */
  private parkKey(opts: ReleaseOptions): string | undefined {
    return opts.park !== undefined && this.parks && !opts.reset && !opts.destroy ? opts.park : undefined;
  }

  /** Keys parked here, oldest first (tests, debugging: heartbeats carry only their hashes). */
  parkedKeys(): string[] {
    return [...this.parked.keys()];
  }

  /**
   * Hashes of the keys parked here, newest first (the newest are likeliest
   * back), at most `max`: for the heartbeat, by which balancers route a key's
   * acquire to its node.
   */
  parkedHashes(max = Infinity): string[] {
    const all = [...this.parked.values()];
    const out: string[] = [];
    for (let i = all.length - 1; i >= 0 && out.length < max; i--) out.push(all[i]!.parkedHash!);
    return out;
  }

  /** How many resources are parked here. */
  get parkedCount(): number {
    return this.parked.size;
  }

  acquire(opts: AcquireOptions = {}): Promise<Lease> {
    const now = this.tryAcquire(opts);
    if (now) return Promise.resolve(now);
    const started = this.clock.now();
    this.meter.request();
    if (this.draining) return Promise.reject(this.refused(ErrorCodes.NODE_DRAINING, `pool ${this.name} is draining`));
    if (this.down) {
      this.meter.failed();
      this.observer.op('acquire', 'unavailable');
      return Promise.reject(this.down.err);
    }
    const ttlMs = opts.ttlMs ?? this.cfg.leaseTtlMs;
    if (this.waitingCount >= this.cfg.maxWaitingClients) {
      return Promise.reject(this.refused(ErrorCodes.POOL_EXHAUSTED, `${describePool(this.name, this.numbers())}: wait queue full (max_waiting_clients=${this.cfg.maxWaitingClients})`));
    }
    const timeoutMs = opts.timeoutMs ?? this.cfg.acquireTimeoutMs;
    return new Promise<Lease>((resolve, reject) => {
      const w: Waiter = {
        id: newId(),
        priority: opts.priority ?? 0,
        enqueuedAt: started,
        deadline: started + timeoutMs,
        ttlMs,
        holder: opts.holder,
        timer: undefined,
        resolve: (lease) => {
          this.meter.acquired(this.clock.now() - started, lease.reused);
          this.observer.op('acquire', 'success', this.clock.now() - started);
          resolve(lease);
        },
        reject,
      };
      w.timer = this.clock.setTimeout(() => this.timeOut(w), timeoutMs);
      this.enqueue(w);
      this.replenish();
      this.relieve();
    });
  }

  /**
   * Waiters that no create can serve (the pool is at max_size) take parked
   * resources, oldest first: reset (context dropped) and handed over.
   */
  private relieve(): void {
    // Creates in flight will serve waiters too; only those beyond them and beyond any room to create get a parked one.
    let short = this.waitingCount - this.evicting - this.creating - Math.max(0, this.cfg.maxSize - this.live);
    while (short-- > 0 && this.parked.size > 0) void this.evict(this.parked.values().next().value!, 'pressure');
  }

  /** Drop a parked resource's context and make it ordinary idle capacity (or the next waiter's). */
  private async evict(r: Resource<R>, why: 'pressure' | 'max_parked' | 'park_ttl'): Promise<void> {
    if (r.parkedKey === undefined) return;
    // Only its own entry: the key may already name another resource.
    if (this.parked.get(r.parkedKey) === r) this.parked.delete(r.parkedKey);
    // The hash, never the key: keys travel only in their holders' requests.
    this.observer.log('info', 'parked resource evicted', { pool: this.name, resourceId: r.id, keyHash: r.parkedHash, why });
    this.observer.op('evict', why);
    r.parkedKey = undefined;
    this.evicting++;
    try {
      await this.giveBack(r, { reset: true });
    } finally {
      this.evicting--;
    }
  }

  private timeOut(w: Waiter): void {
    // The numbers as the waiter saw them, itself included (as HikariCP reports them).
    const n = this.numbers();
    if (!this.dequeue(w)) return;
    const cause = this.lastCreateError && this.createFailures > 0 ? `; last create error: ${this.lastCreateError.message}` : '';
    w.reject(this.refused(ErrorCodes.POOL_TIMEOUT, `${describePool(this.name, n)}: no resource within ${w.deadline - w.enqueuedAt} ms${cause}`, 'timeout', n));
  }

  private refused(code: (typeof ErrorCodes)[keyof typeof ErrorCodes], message: string, result: string = code.toLowerCase(), n = this.numbers()): ShoalError {
    this.meter.failed();
    this.observer.op('acquire', result);
    return new ShoalError(code, message, { pool: n });
  }

  private enqueue(w: Waiter): void {
    let i = 0;
    while (i < this.queue.length && this.queue[i]!.priority > w.priority) i++;
    if (this.queue[i]?.priority !== w.priority) this.queue.splice(i, 0, { priority: w.priority, waiters: [] });
    this.queue[i]!.waiters.push(w);
    this.waitingCount++;
  }

  /** Remove a waiter wherever it is; false if it already left the queue. */
  private dequeue(w: Waiter): boolean {
    const bucket = this.queue.find((b) => b.priority === w.priority);
    const at = bucket ? bucket.waiters.indexOf(w) : -1;
    if (!bucket || at < 0) return false;
    bucket.waiters.splice(at, 1);
    this.waitingCount--;
    this.clock.clearTimeout(w.timer);
    if (bucket.waiters.length === 0) this.queue.splice(this.queue.indexOf(bucket), 1);
    return true;
  }

  private nextWaiter(): Waiter | undefined {
    const w = this.queue[0]?.waiters[0];
    if (w) this.dequeue(w);
    return w;
  }

  private rejectAllWaiters(mkErr: () => ShoalError): void {
    for (let w = this.nextWaiter(); w; w = this.nextWaiter()) w.reject(mkErr());
  }

  private takeIdle(): Resource<R> | undefined {
    const now = this.clock.now();
    for (let r = this.idle.pop(); r; r = this.idle.pop()) {
      // An idle resource past its lifetime is not handed out; the cleanup would have taken it soon anyway.
      if (now >= r.expiresAt) { void this.destroy(r, 'lifetime'); continue; }
      return r;
    }
    return undefined;
  }

  private grant(r: Resource<R>, ttlMs: number, holder: Holder | undefined): Lease {
    const now = this.clock.now();
    r.state = 'active';
    const reused = r.useCount > 0;
    r.useCount++;
    const rec: LeaseRec = { id: newLeaseId(), secret: newLeaseSecret(), resource: r as Resource<unknown>, holder, grantedAt: now, expiresAt: now + ttlMs, ttlMs, reused, timer: undefined, execs: new Set(), running: new Set() };
    rec.timer = this.clock.setTimeout(() => this.expire(rec), ttlMs);
    this.leases.set(rec.id, rec);
    return this.leaseView(rec);
  }

  private leaseView(rec: LeaseRec): Lease {
    const lease: Lease = { leaseId: rec.id, secret: rec.secret, nodeId: '', pool: this.name, resourceId: rec.resource.id, expiresAt: rec.expiresAt, ttlMs: rec.ttlMs, reused: rec.reused };
    let meta: Record<string, unknown> | undefined;
    try {
      meta = this.driver.describe?.(rec.resource.handle as R);
    } catch (err) {
      // A driver's description is a nicety: never let it lose a grant.
      this.observer.log('warn', 'driver describe failed', { pool: this.name, err: (err as Error).message });
    }
    if (meta) lease.meta = meta;
    return lease;
  }

  /** Hand a ready resource to the longest-waiting highest-priority waiter, or park it idle. */
  private dispatch(r: Resource<R>): void {
    if (this.closed) { void this.destroy(r, 'close'); return; }
    const w = this.nextWaiter();
    if (w) { w.resolve(this.grant(r, w.ttlMs, w.holder)); return; }
    if (this.shedding > 0) { this.toShed--; void this.destroy(r, 'scale_down'); return; }
    r.state = 'ready';
    r.idleSince = this.clock.now();
    this.idle.push(r);
  }

  // ---- leases ------------------------------------------------------------

  private lease(leaseId: string): LeaseRec {
    const rec = this.leases.get(leaseId);
    if (rec) return rec;
    const how = this.ended.get(leaseId) ?? this.endedOld.get(leaseId);
    if (how === 'expired') throw new ShoalError(ErrorCodes.LEASE_EXPIRED, `lease ${leaseId} expired and its resource was reclaimed`);
    if (how) throw new ShoalError(ErrorCodes.LEASE_NOT_FOUND, `lease ${leaseId} was ${how}`);
    throw new ShoalError(ErrorCodes.LEASE_NOT_FOUND, `lease ${leaseId} is not held on pool ${this.name}`);
  }

  /** Is this lease held right now (not ended)? */
  holds(leaseId: string): boolean {
    return this.leases.has(leaseId);
  }

  /** May a caller showing `secret` operate this lease? False for a wrong secret; true for an ended lease (which then answers as ended). */
  authorized(leaseId: string, secret: unknown): boolean {
    const rec = this.leases.get(leaseId);
    return rec === undefined || sameSecret(rec.secret, secret);
  }

  hasLease(leaseId: string): boolean {
    return this.leases.has(leaseId) || this.ended.has(leaseId) || this.endedOld.has(leaseId);
  }

  renew(leaseId: string, ttlMs?: number): { expiresAt: number; ttlMs: number } {
    const rec = this.lease(leaseId);
    const ttl = ttlMs ?? rec.ttlMs;
    this.clock.clearTimeout(rec.timer);
    rec.ttlMs = ttl;
    rec.expiresAt = this.clock.now() + ttl;
    rec.timer = this.clock.setTimeout(() => this.expire(rec), ttl);
    this.observer.op('renew', 'success');
    return { expiresAt: rec.expiresAt, ttlMs: ttl };
  }

  release(leaseId: string, opts: ReleaseOptions = {}): void {
    const rec = this.lease(leaseId);
    this.endLease(rec, 'released');
    this.observer.op('release', 'success');
    const r = rec.resource as Resource<R>;
    const key = this.parkKey(opts);
    if (key === undefined) { void this.giveBack(r, opts, rec.running); return; }
    // The key names this resource from now on: a context parked under it before is older (reset, ordinary
    // capacity), and an older release of the key still returning will not park (giveBack); its waiters move here.
    const older = this.parked.get(key);
    if (older) void this.evict(older, 'max_parked');
    const before = this.returning.get(key);
    const entry: Returning<R> = { r, waiters: before ? before.waiters.splice(0) : [] };
    this.returning.set(key, entry);
    void this.giveBack(r, opts, rec.running).finally(() => this.settleReturning(key, entry));
  }

  /**
   * The return of the key's release `entry` is over (parked, or not): its
   * waiters claim the resource, first come first served; the others (and
   * all, if it did not park) get undefined and go on as a miss. Nothing if a
   * newer release of the key has replaced the entry.
   */
  private settleReturning(key: string, entry: Returning<R>): void {
    if (this.returning.get(key) !== entry) return;
    this.returning.delete(key);
    for (const w of entry.waiters) {
      this.clock.clearTimeout(w.timer);
      w.resolve(this.claimParked(key, w.opts));
    }
  }

  /** Keyed acquires waiting for returns are refused now (drain, close), as queued ones are; the returns go on. */
  private rejectParkWaiters(why: string): void {
    for (const entry of this.returning.values()) {
      for (const w of entry.waiters.splice(0)) {
        this.clock.clearTimeout(w.timer);
        this.meter.request();
        w.reject(this.refused(ErrorCodes.NODE_DRAINING, `pool ${this.name} is ${why}`));
      }
    }
  }

  /** BAD_REQUEST unless the driver takes these per-lease options (nothing is taken before this says yes). */
  checkLeaseOptions(options: unknown): void {
    if (!this.driver.checkLeaseOptions) throw new ShoalError(ErrorCodes.BAD_REQUEST, `pool ${this.name} (${this.driver.kind}) takes no per-lease options`);
    this.driver.checkLeaseOptions(options);
  }

  /**
   * Apply per-lease options to a held lease's resource (checked first). On
   * failure the lease is given back with a reset and the error thrown.
   * Returns the lease as the holder sees it (its meta may have changed).
   */
  async prepare(leaseId: string, options: Record<string, unknown>): Promise<Lease> {
    return (await this.applyOptions(leaseId, options, false)).lease;
  }

  /**
   * `prepare` on a parked resource just claimed: the driver keeps its
   * context if it can (claude-cli: a respawn resumes the conversation). The
   * lease says `park: 'hit'` if it did, `'gone'` if the options cost the context.
   */
  async prepareParked(leaseId: string, options: Record<string, unknown>): Promise<Lease> {
    const { lease, kept } = await this.applyOptions(leaseId, options, true);
    return { ...lease, park: kept ? 'hit' : 'gone' };
  }

  private async applyOptions(leaseId: string, options: Record<string, unknown>, keepContext: boolean): Promise<{ lease: Lease; kept: boolean }> {
    const rec = this.lease(leaseId);
    const r = rec.resource as Resource<R>;
    r.customized = true;
    const ac = new AbortController();
    let kept: boolean | void;
    try {
      kept = await this.withTimeout(this.driver.prepare!(r.handle as R, options, ac.signal, keepContext), this.cfg.create.timeoutMs, 'prepare', ac);
    } catch (err) {
      if (this.leases.get(leaseId) === rec) this.release(leaseId, { reset: true });
      throw asDriverError(err, 'prepare');
    }
    return { lease: this.leaseView(rec), kept: kept !== false };
  }

  /** Continue a parked context on a held lease's fresh resource (driver `adopt`); false if it cannot. */
  async adopt(leaseId: string, meta: Record<string, unknown>): Promise<{ ok: boolean; lease: Lease }> {
    const rec = this.lease(leaseId);
    const r = rec.resource as Resource<R>;
    let ok = false;
    try {
      ok = await this.withTimeout(this.driver.adopt!(r.handle as R, meta), this.cfg.create.timeoutMs, 'adopt');
    } catch (err) {
      this.observer.log('info', 'parked context could not be resumed', { pool: this.name, resourceId: r.id, err: (err as Error).message });
    }
    return { ok, lease: this.leaseView(rec) };
  }

  /** What the driver says about a held lease's resource (for the parking record). */
  describeLease(leaseId: string): Record<string, unknown> | undefined {
    return this.leaseView(this.lease(leaseId)).meta;
  }

  /** The deadline of an exec whose caller gave none, for the one-shot lease's TTL. */
  defaultExecTimeoutMs(op: string): number | undefined {
    return this.driver.defaultExecTimeoutMs?.(op);
  }

  /** Run an operation on a held lease, streaming events through `emit`. */
  async exec(leaseId: string, op: string, args: unknown, emit: (e: unknown) => void, timeoutMs?: number): Promise<unknown> {
    const rec = this.lease(leaseId);
    const r = rec.resource as Resource<R>;
    const ac = new AbortController();
    rec.execs.add(ac);
    const started = this.clock.now();
    const deadline = timeoutMs ?? this.driver.defaultExecTimeoutMs?.(op);
    const backstop = deadline && this.driver.ownsExecDeadline ? deadline + EXEC_DEADLINE_BACKSTOP_MS : deadline;
    const timer = backstop ? this.clock.setTimeout(() => ac.abort(new ShoalError(ErrorCodes.POOL_TIMEOUT, `exec ${op} on pool ${this.name} took longer than ${deadline} ms`)), backstop) : undefined;
    try {
      const run = this.driver.exec(r.handle as R, op, args, { emit, signal: ac.signal, timeoutMs: deadline, client: rec.holder?.client });
      rec.running.add(run);
      run.then(() => rec.running.delete(run), () => rec.running.delete(run));
      const result = await abortable(run, ac.signal);
      this.meter.executed(this.clock.now() - started, true);
      this.observer.op('exec', 'success', this.clock.now() - started);
      return result;
    } catch (err) {
      // A failed exec may have left the resource broken (a CLI that died mid-turn):
      // validate it on return whatever the skip window says.
      r.lastValidatedAt = -Infinity;
      // Only with a probe to notice its return: else the pool would stay down with resources it never retries.
      if (err instanceof ShoalError && BACKEND_DOWN.has(err.code) && (this.cfg.probeIntervalMs ?? 0) > 0) this.markDown(err);
      this.meter.executed(this.clock.now() - started, false);
      this.observer.op('exec', 'error', this.clock.now() - started);
      throw asDriverError(err, `exec ${op}`);
    } finally {
      this.clock.clearTimeout(timer);
      rec.execs.delete(ac);
    }
  }

  private expire(rec: LeaseRec): void {
    if (this.leases.get(rec.id) !== rec) return;
    this.endLease(rec, 'expired');
    this.observer.op('release', 'expired');
    this.observer.leaseExpired({ leaseId: rec.id, resourceId: rec.resource.id, holder: rec.holder, heldMs: this.clock.now() - rec.grantedAt });
    this.observer.log('warn', 'lease expired, reclaiming its resource', { pool: this.name, leaseId: rec.id, holder: rec.holder });
    // The holder may have left the resource mid-turn: always reset before reuse.
    void this.giveBack(rec.resource as Resource<R>, { reset: true }, rec.running);
  }

  private endLease(rec: LeaseRec, how: EndedHow): void {
    this.clock.clearTimeout(rec.timer);
    this.leases.delete(rec.id);
    if (how !== 'released') this.observer.leaseLost?.(rec.id, how);
    for (const ac of rec.execs) ac.abort(new ShoalError(ErrorCodes.CANCELLED, `lease ${rec.id} ${how} during exec`));
    if (this.ended.size >= ENDED_MEMORY) {
      this.endedOld = this.ended;
      this.ended = new Map();
    }
    this.ended.set(rec.id, how);
  }

  /**
   * Returning: decide destroy or reuse; wait for execs the lease left running
   * to stop (their abort is only a request to the driver); reset and validate
   * as the policy says; then dispatch.
   */
  private async giveBack(r: Resource<R>, opts: ReleaseOptions, running?: ReadonlySet<Promise<unknown>>): Promise<void> {
    const sm = this.cfg.sessionManagement;
    const now = this.clock.now();
    const why = opts.destroy ? 'requested'
      : !sm.enableReuse ? 'reuse_disabled'
      : this.closed || this.draining ? 'drain'
      : sm.maxReuseCount > 0 && r.useCount >= sm.maxReuseCount ? 'max_reuse'
      : now >= r.expiresAt ? 'lifetime'
      : this.overMemory(r) ? 'memory'
      : undefined;
    if (why) { await this.destroy(r, why); this.replenish(); return; }
    r.state = 'returning';
    if (running && running.size > 0) {
      r.lastValidatedAt = -Infinity; // interrupted mid-operation: validate whatever the skip window says
      if (!(await this.stopped(running))) {
        this.observer.log('warn', 'exec did not stop after its lease ended, destroying the resource', { pool: this.name, resourceId: r.id });
        await this.destroy(r, 'exec_stuck');
        this.replenish();
        return;
      }
      if (r.state !== 'returning') return; // closed under us
    }
    // Parking keeps the context: no reset (per-lease options stay too, they are part of it).
    const park = this.parkKey(opts);
    try {
      if (r.customized && park === undefined) {
        r.customized = false;
        await this.withTimeout(this.driver.prepare!(r.handle as R, undefined, new AbortController().signal), this.cfg.create.timeoutMs, 'restore');
      }
      if (park === undefined && (opts.reset || sm.contextReset)) {
        const t0 = this.clock.now();
        await this.withTimeout(this.driver.reset(r.handle as R), this.cfg.create.timeoutMs, 'reset');
        this.observer.op('reset', 'success', this.clock.now() - t0);
      }
      if (sm.validateOnReturn && this.clock.now() - r.lastValidatedAt >= sm.validateSkipWindowMs) {
        const ok = await this.withTimeout(this.driver.validate(r.handle as R), this.cfg.create.timeoutMs, 'validate');
        this.observer.op('validate', ok ? 'success' : 'error');
        if (!ok) { await this.destroy(r, 'invalid'); this.replenish(); return; }
        r.lastValidatedAt = this.clock.now();
      }
    } catch (err) {
      this.observer.log('warn', 'return failed, destroying resource', { pool: this.name, resourceId: r.id, err: (err as Error).message });
      await this.destroy(r, 'return_failed');
      this.replenish();
      return;
    }
    if (r.state !== 'returning') return; // closed under us
    if (park !== undefined) {
      const entry = this.returning.get(park);
      // A newer release of the key came while this one was returning: the key names that one; this context is dropped.
      if (entry?.r !== r) { this.observer.op('evict', 'max_parked'); await this.giveBack(r, { reset: true }); return; }
      this.park(r, park, entry);
      return;
    }
    this.dispatch(r);
  }

  /** `r`, named by the key's current release `entry`, ends its return parked. */
  private park(r: Resource<R>, key: string, entry: Returning<R>): void {
    const sm = this.cfg.sessionManagement;
    r.state = 'ready';
    r.parkedKey = key;
    r.parkedHash = parkKeyHash(key);
    r.parkedAt = this.clock.now();
    r.idleSince = r.parkedAt;
    this.parked.delete(key);
    this.parked.set(key, r);
    while (this.parked.size > sm.maxParked) void this.evict(this.parked.values().next().value!, 'max_parked');
    // An acquire with the key that came while it was returning gets it before any waiter without one.
    this.settleReturning(key, entry);
    // Someone is waiting right now: parked capacity is theirs.
    this.relieve();
  }

  // ---- creating ----------------------------------------------------------

  /** Resources counted against max: everything not being destroyed. */
  private get live(): number {
    return this.resources.size - this.destroying;
  }

  /**
   * Leased resources still to retire after a scale-down, never more than the
   * pool is over its target: resources destroyed for other reasons meanwhile
   * count towards it, so the pool never sheds below the target.
   */
  private get shedding(): number {
    return Math.min(this.toShed, Math.max(0, this.live - this.target));
  }

  private overMemory(r: Resource<R>): boolean {
    const limit = this.cfg.resourceLimits.maxMemoryPerSessionBytes;
    return limit > 0 && r.handle !== undefined && this.driver.usage(r.handle).memoryBytes > limit;
  }

  private totalMemory(): number {
    let sum = 0;
    for (const r of this.resources.values()) if (r.handle !== undefined && r.state !== 'destroying') sum += this.driver.usage(r.handle).memoryBytes;
    return sum;
  }

  /**
   * Create what is needed: enough for the waiters (up to max) and up to the
   * target size, with at most `max_concurrent_creates` in flight (each
   * create that lands starts the next) and at most CREATE_CHUNK started per
   * turn of the event loop. After a failure only one create runs at a time,
   * and only once the backoff has passed: never a busy loop of failing creates.
   */
  private replenish(reason = 'demand'): void {
    if (this.closed || this.draining) return;
    if (this.createFailures > 0) {
      if (this.creating > 0) return;
      const wait = this.retryAt - this.clock.now();
      if (wait > 0) {
        if (!this.retryTimer) this.retryTimer = this.clock.setTimeout(() => { this.retryTimer = undefined; this.replenish(); }, wait);
        return;
      }
    }
    const maxTotal = this.cfg.resourceLimits.maxTotalMemoryBytes;
    // Each waiter needs one resource beyond those busy; creates in flight are already counted in `live`.
    const busy = this.live - this.idle.length - this.creating;
    const wanted = Math.min(this.cfg.maxSize, Math.max(this.target - this.shedding, busy + this.waitingCount));
    let n = Math.min(wanted - this.live, this.maxConcurrentCreates - this.creating);
    // Down, callers are refused at once and make no demand: keep trying one create per backoff anyway.
    if (this.down && this.live === 0 && this.creating === 0) n = Math.max(n, 1);
    if (this.createFailures > 0) n = Math.min(n, 1);
    if (n > 0 && maxTotal > 0 && this.totalMemory() >= maxTotal) {
      this.observer.log('warn', 'max_total_memory reached, not creating', { pool: this.name, maxTotal });
      return;
    }
    if (n > CREATE_CHUNK && this.chunkTimer === undefined) {
      this.chunkTimer = this.clock.setTimeout(() => { this.chunkTimer = undefined; this.replenish(reason); this.notifySettled(); }, 0);
    }
    for (let i = 0; i < Math.min(n, CREATE_CHUNK); i++) void this.createOne(reason);
  }

  private createOne(reason: string): Promise<void> {
    return this.track(this.doCreate(reason));
  }

  private track(p: Promise<void>): Promise<void> {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
    return p;
  }

  private async doCreate(reason: string): Promise<void> {
    const now = this.clock.now();
    const sm = this.cfg.sessionManagement;
    const lifetime = sm.maxLifetimeMs > 0 ? sm.maxLifetimeMs * (1 - sm.lifetimeJitter * this.random()) : Infinity;
    const r: Resource<R> = { id: newId(), handle: undefined, state: 'creating', createdAt: now, expiresAt: now + lifetime, idleSince: now, lastValidatedAt: now, useCount: 0 };
    this.resources.set(r.id, r);
    this.creating++;
    const ac = new AbortController();
    try {
      r.handle = await this.withTimeout(this.driver.create({ resourceId: r.id, signal: ac.signal }), this.cfg.create.timeoutMs, 'create', ac);
    } catch (err) {
      this.creating--;
      this.resources.delete(r.id);
      this.createFailed(asDriverError(err, 'create'), reason);
      this.notifySettled();
      return;
    }
    this.creating--;
    this.createFailures = 0;
    this.lastCreateError = undefined;
    // Only a create proves the backend works: a probe that says "up" while creates fail must not make probes fast again.
    this.downProbes = 0;
    this.healed('a create succeeded');
    const t = this.clock.now();
    r.lastValidatedAt = t;
    this.observer.op('create', 'success', t - now);
    this.meter.createLatency.add(t - now);
    if (this.closed) { this.notifySettled(); await this.destroy(r, 'close'); return; }
    this.dispatch(r);
    // A resource created for demand may find the demand gone (timed out) and the pool over target: dispatch handled it.
    this.replenish();
    this.notifySettled();
  }

  private createFailed(err: ShoalError, reason: string): void {
    this.createFailures++;
    // Warn when failing starts or its reason changes; a pool that stays down (no Weaviate
    // on this machine) must not fill the log at every retry.
    const changed = this.createFailures === 1 || err.message !== this.lastCreateError?.message;
    this.lastCreateError = err;
    const backoff = Math.min(this.cfg.create.retryMaxMs, this.cfg.create.retryBaseMs * 2 ** (this.createFailures - 1));
    // Full jitter on the upper half, so that nodes failing together do not retry together.
    this.retryAt = this.clock.now() + backoff * (0.5 + 0.5 * this.random());
    this.observer.op('create', 'error');
    this.observer.log(changed ? 'warn' : 'debug', 'create failed', { pool: this.name, reason, failures: this.createFailures, retryInMs: Math.round(this.retryAt - this.clock.now()), err: err.message });
    // Nothing left to lease or being made: the backend is down for callers until a probe or create says otherwise.
    if (this.live === 0) this.markDown(err);
    // The waiters this create was for get its error now rather than a timeout later;
    // those that other in-flight creates can still serve keep waiting.
    while (this.waitingCount > this.creating) {
      const w = this.nextWaiter()!;
      this.meter.failed();
      this.observer.op('acquire', 'error');
      // A driver's own code (e.g. WEAVIATE_UNAVAILABLE) tells the caller more than DRIVER_ERROR.
      // A generic failure is the pool's unavailability to this caller: POOL_UNAVAILABLE, retryable, like the fail-fast refusals.
      const code = err.code === ErrorCodes.INTERNAL || err.code === ErrorCodes.DRIVER_ERROR ? ErrorCodes.POOL_UNAVAILABLE : err.code;
      w.reject(new ShoalError(code, `${describePool(this.name, this.numbers())}: create failed: ${err.message}`, { pool: this.numbers(), details: { ...err.details, retryable: true, backend: this.driver.kind, cause: err.message, attempts: this.createFailures } }));
    }
    this.replenish();
  }

  private destroy(r: Resource<R>, reason: string): Promise<void> {
    if (r.state === 'destroying') return Promise.resolve();
    return this.track(this.doDestroy(r, reason));
  }

  private async doDestroy(r: Resource<R>, reason: string): Promise<void> {
    const wasIdle = r.state === 'ready';
    r.state = 'destroying';
    this.destroying++;
    if (wasIdle) {
      const at = this.idle.indexOf(r);
      if (at >= 0) this.idle.splice(at, 1);
      if (r.parkedKey !== undefined && this.parked.get(r.parkedKey) === r) this.parked.delete(r.parkedKey);
    }
    try {
      if (r.handle !== undefined) await this.withTimeout(this.driver.destroy(r.handle), this.cfg.create.timeoutMs, 'destroy');
      this.observer.op('destroy', 'success');
    } catch (err) {
      this.observer.op('destroy', 'error');
      this.observer.log('warn', 'destroy failed', { pool: this.name, resourceId: r.id, reason, err: (err as Error).message });
    } finally {
      this.resources.delete(r.id);
      this.destroying--;
      this.observer.log('debug', 'resource destroyed', { pool: this.name, resourceId: r.id, reason });
    }
  }

  /** Did these driver calls settle within a create timeout? */
  private stopped(running: ReadonlySet<Promise<unknown>>): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const t = this.clock.setTimeout(() => resolve(false), this.cfg.create.timeoutMs);
      void Promise.allSettled([...running]).then(() => { this.clock.clearTimeout(t); resolve(true); });
    });
  }

  private withTimeout<T>(p: Promise<T>, ms: number, what: string, ac?: AbortController): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const timer = this.clock.setTimeout(() => {
        done = true;
        ac?.abort();
        reject(new ShoalError(ErrorCodes.DRIVER_ERROR, `${what} timed out after ${ms} ms`, { details: { timeout: true } }));
        // A create that lands after its timeout must not leak.
        if (what === 'create') p.then((h) => this.driver.destroy(h as unknown as R)).catch(() => {});
      }, ms);
      p.then(
        (v) => { if (!done) { done = true; this.clock.clearTimeout(timer); resolve(v); } },
        (e) => { if (!done) { done = true; this.clock.clearTimeout(timer); reject(e); } },
      );
    });
  }

  // ---- sizing and cleanup --------------------------------------------------

  /**
   * Scale commands: bounded by min and max; returns the new target, the
   * resources counted against it (`total`: ready ones plus creates in
   * flight) and those two apart. Creates beyond `max_concurrent_creates`
   * start as earlier ones land.
   */
  scale(op: 'up' | 'down' | 'target', n: number): { target: number; total: number; ready: number; creating: number } {
    const want = op === 'up' ? this.target + n : op === 'down' ? this.target - n : n;
    this.target = clamp(want, this.cfg.minSize, this.cfg.maxSize);
    const over = this.live - this.target;
    const shed = over > 0 ? this.shrinkIdle(over, 'scale_down') : 0;
    this.toShed = Math.max(0, over - shed);
    this.replenish('scale');
    return { target: this.target, total: this.live, ready: this.live - this.creating, creating: this.creating };
  }

  /** Destroy up to n idle resources, the longest idle first. Leased ones are never touched here. */
  private shrinkIdle(n: number, reason: string): number {
    let done = 0;
    for (; done < n && this.idle.length > 0; done++) void this.destroy(this.idle[0]!, reason);
    return done;
  }

  private scheduleCleanup(): void {
    // One timer per pool for the sweep and for validation, at the driver's validation period if shorter.
    const every = Math.min(this.cfg.sessionManagement.cleanupIntervalMs, this.driver.validateIntervalMs ?? Infinity);
    if (every <= 0 || this.closed) return;
    this.cleanupTimer = this.clock.setTimeout(() => { this.cleanup(); this.scheduleCleanup(); }, every);
  }

  /**
   * Idle timeout (down to the target), max lifetime, memory limits; then
   * refill to the target. In this order: destroys, max_total_memory
   * recycling, then what takes resources out for a while (park_ttl's reset,
   * validation), so that recycling sees every idle and parked resource in
   * place and never defers to what this same cleanup took out.
   */
  cleanup(): void {
    if (this.closed) return;
    const sm = this.cfg.sessionManagement;
    const now = this.clock.now();
    let surplus = this.live - this.target;
    for (const r of [...this.idle]) {
      if (now >= r.expiresAt) { void this.destroy(r, 'lifetime'); surplus--; continue; }
      if (this.overMemory(r)) { void this.destroy(r, 'memory'); surplus--; continue; }
      if (surplus > 0 && sm.idleTimeoutMs > 0 && now - r.idleSince >= sm.idleTimeoutMs) { void this.destroy(r, 'idle_timeout'); surplus--; continue; }
    }
    this.recycleOverTotalMemory();
    for (const r of [...this.parked.values()]) {
      if (now - (r.parkedAt ?? now) >= sm.parkTtlMs || now >= r.expiresAt) void this.evict(r, 'park_ttl');
    }
    // A resource can die while idle (a CLI process crashing): find out before a holder does.
    const validateEvery = this.driver.validateIntervalMs ?? (sm.validateOnReturn ? sm.cleanupIntervalMs : Infinity);
    for (const r of [...this.idle]) if (now - r.lastValidatedAt >= validateEvery) void this.validateIdle(r);
    this.replenish();
  }

  /**
   * The health probe's round trip: validate the idle resource validated
   * longest ago, now, whatever the skip window (a failing one is replaced).
   * Undefined when nothing is idle.
   */
  probeIdle(): Promise<boolean | undefined> {
    let oldest: Resource<R> | undefined;
    for (const r of this.idle) if (!oldest || r.lastValidatedAt < oldest.lastValidatedAt) oldest = r;
    return oldest ? this.validateIdle(oldest) : Promise.resolve(undefined);
  }

  /** Take an idle resource out while it is validated, then put it back or replace it. */
  private async validateIdle(r: Resource<R>): Promise<boolean | undefined> {
    const at = this.idle.indexOf(r);
    if (at < 0) return undefined;
    this.idle.splice(at, 1);
    r.state = 'returning';
    let ok = false;
    try {
      ok = await this.withTimeout(this.driver.validate(r.handle as R), this.cfg.create.timeoutMs, 'validate');
    } catch {
      ok = false;
    }
    this.observer.op('validate', ok ? 'success' : 'error');
    if (r.state !== 'returning') return ok; // closed under us
    if (!ok) {
      this.observer.log('warn', 'idle resource failed validation, replacing it', { pool: this.name, resourceId: r.id });
      await this.destroy(r, 'invalid');
      this.replenish();
      return ok;
    }
    r.lastValidatedAt = this.clock.now();
    this.dispatch(r);
    return ok;
  }

  /**
   * Over max_total_memory: destroy the largest idle or parked resources
   * until under it (replenish then refills within the limit); a parked one
   * loses its context, as an eviction. A larger one that is only out for a
   * moment (being validated, or returning after its release) defers the
   * choice to the next cleanup: recycling a smaller one now would leave the
   * largest in place. The cleanup runs this before taking any out itself.
   */
  private recycleOverTotalMemory(): void {
    const maxTotal = this.cfg.resourceLimits.maxTotalMemoryBytes;
    if (maxTotal <= 0) return;
    let total = this.totalMemory();
    if (total <= maxTotal) return;
    const mem = (r: Resource<R>) => (r.handle !== undefined ? this.driver.usage(r.handle).memoryBytes : 0);
    let settling = 0;
    for (const r of this.resources.values()) if (r.state === 'returning') settling = Math.max(settling, mem(r));
    for (const r of [...this.idle, ...this.parked.values()].sort((a, b) => mem(b) - mem(a))) {
      if (total <= maxTotal || settling > mem(r)) break;
      total -= mem(r);
      this.observer.log('warn', 'max_total_memory exceeded, recycling the largest idle resource', { pool: this.name, resourceId: r.id, memoryBytes: mem(r), maxTotal, parked: r.parkedKey !== undefined });
      if (r.parkedKey !== undefined) {
        this.observer.log('info', 'parked resource evicted', { pool: this.name, resourceId: r.id, keyHash: r.parkedHash, why: 'total_memory' });
        this.observer.op('evict', 'total_memory');
      }
      void this.destroy(r, 'total_memory');
    }
  }

  // ---- backend down / probe ------------------------------------------------

  /**
   * The backend is known down: refuse acquires at once (and waiters now)
   * with a retryable error naming the backend and its last error.
   */
  private markDown(cause: ShoalError): void {
    const code = BACKEND_DOWN.has(cause.code) ? cause.code : ErrorCodes.POOL_UNAVAILABLE;
    const since = this.down?.since ?? this.clock.now();
    const fix = typeof cause.details?.fix === 'string' ? cause.details.fix : undefined;
    const err = new ShoalError(code, `pool ${this.name}: ${this.driver.kind} backend unavailable: ${cause.message}${fix && !cause.message.includes(fix) ? `; ${fix}` : ''}`, {
      pool: this.numbers(), details: { ...cause.details, retryable: true, backend: this.driver.kind, cause: cause.message, since },
    });
    const was = this.down;
    this.down = { err, since };
    if (!was) {
      this.observer.log('warn', 'backend down: acquires fail fast until a probe or create succeeds', { pool: this.name, backend: this.driver.kind, err: cause.message });
      if (!this.probing) { this.clock.clearTimeout(this.probeTimer); this.scheduleProbe(); }
    }
    this.rejectAllWaiters(() => { this.meter.failed(); this.observer.op('acquire', 'unavailable'); return err; });
  }

  /** The backend answers again: serve, and create now rather than when the create backoff next fires. */
  private healed(how: string): void {
    if (!this.down) return;
    this.observer.log('info', 'backend back', { pool: this.name, backend: this.driver.kind, how, downMs: this.clock.now() - this.down.since });
    this.down = undefined;
    this.retryAt = this.clock.now();
    this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.replenish();
  }

  private scheduleProbe(): void {
    const every = this.cfg.probeIntervalMs ?? 0;
    if (every <= 0 || this.closed) return;
    // Down, a backend that blinked is found back sooner than one interval; one that stays down costs one probe per interval.
    const wait = this.down ? Math.min(every, this.cfg.create.retryBaseMs * 2 ** this.downProbes++) : every;
    this.probeTimer = this.clock.setTimeout(() => { void this.probe().finally(() => this.scheduleProbe()); }, wait);
  }

  /**
   * One backend probe (the driver's `probe`, e.g. Weaviate's ready endpoint,
   * the CLI's auth state). A driver without one is probed, while down, by
   * one create outside the backoff.
   */
  async probe(): Promise<boolean> {
    if (this.probing || this.closed) return !this.down;
    if (!this.driver.probe) { this.cannotTell(); return !this.down; }
    this.probing = true;
    try {
      const r = await this.withTimeout(this.driver.probe(), this.cfg.create.timeoutMs, 'probe').catch((e: unknown) => ({ ok: false, error: asDriverError(e, 'probe') }));
      this.observer.op('probe', r.ok === undefined ? 'unknown' : r.ok ? 'success' : 'error');
      if (this.closed) return r.ok !== false;
      if (r.ok === true) this.healed('probe');
      else if (r.ok === false) this.markDown(r.error ?? new ShoalError(ErrorCodes.POOL_UNAVAILABLE, 'backend probe failed'));
      else this.cannotTell();
      return r.ok !== false;
    } finally {
      this.probing = false;
    }
  }

  /**
   * No probe can tell: while down, the create retry asks instead (or, with
   * resources left, the next operation). The retry is pulled forward only
   * when its backoff has grown past the probe interval: the pool still heals
   * within an interval, and a short backoff is not doubled by a create per
   * probe (the down-fast probes come as often as the backoff's first steps).
   */
  private cannotTell(): void {
    if (!this.down) return;
    if (this.live > 0) { this.healed('no backend probe: the next operation tries'); return; }
    if (this.creating > 0) return;
    const now = this.clock.now();
    if (this.retryAt - now > (this.cfg.probeIntervalMs ?? 0)) this.retryAt = now;
    this.replenish();
  }

  // ---- numbers -----------------------------------------------------------

  numbers(): PoolNumbers {
    // Parked resources are idle capacity (a waiter gets one, reset): balancers and autoscalers must see them so.
    const idle = this.idle.length + this.parked.size;
    const total = this.live - this.creating;
    return { total, active: total - idle, idle, waiting: this.waitingCount, creating: this.creating, max: this.cfg.maxSize };
  }

  /**
   * A pool is unavailable when its creates keep failing and it has nothing to
   * lease: status, heartbeats and the CLI show the reason instead of the
   * process crash-looping (a missing `claude` binary, Weaviate down).
   */
  availability(): { available: boolean; reason?: string } {
    if (this.down) return { available: false, reason: this.down.err.message };
    if (this.createFailures > 0 && this.live - this.creating === 0 && this.lastCreateError) {
      return { available: false, reason: this.lastCreateError.message };
    }
    return { available: true };
  }

  get targetSize(): number {
    return this.target;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  get limits(): { min: number; max: number; maxWaiting: number; weight: number; maxTotalMemoryBytes: number } {
    return { min: this.cfg.minSize, max: this.cfg.maxSize, maxWaiting: this.cfg.maxWaitingClients, weight: this.cfg.weight, maxTotalMemoryBytes: this.cfg.resourceLimits.maxTotalMemoryBytes };
  }

  memoryBytes(): number {
    return this.totalMemory();
  }

  /** Resource-level view for status endpoints and leak reports. */
  snapshot(): { resources: ResourceView[]; leases: LeaseView[] } {
    const now = this.clock.now();
    const byResource = new Map<string, LeaseRec>();
    for (const l of this.leases.values()) byResource.set(l.resource.id, l);
    const resources: ResourceView[] = [];
    for (const r of this.resources.values()) {
      const l = byResource.get(r.id);
      resources.push({ id: r.id, status: r.state, created_at: new Date(r.createdAt).toISOString(), age_ms: now - r.createdAt, request_count: r.useCount, leaseId: l?.id, memoryBytes: r.handle !== undefined ? this.driver.usage(r.handle).memoryBytes : 0 });
    }
    const leases = [...this.leases.values()].map((l) => ({ leaseId: l.id, resourceId: l.resource.id, holder: l.holder, heldMs: now - l.grantedAt, expiresInMs: l.expiresAt - now, execs: l.execs.size }));
    return { resources, leases };
  }
}

export interface ResourceView {
  id: string;
  status: State;
  created_at: string;
  age_ms: number;
  request_count: number;
  leaseId: string | undefined;
  memoryBytes: number;
}

export interface LeaseView {
  leaseId: string;
  resourceId: string;
  holder: Holder | undefined;
  heldMs: number;
  expiresInMs: number;
  execs: number;
}

type EndedHow = 'expired' | 'released' | 'revoked';

function clamp(v: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, v));
}

function asDriverError(err: unknown, what: string): ShoalError {
  if (err instanceof ShoalError) return err;
  return new ShoalError(ErrorCodes.DRIVER_ERROR, `${what} failed: ${err instanceof Error ? err.message : String(err)}`, { details: { cause: err instanceof Error ? err.message : String(err) } });
}

/** Reject as soon as the signal aborts, even if the driver ignores it. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e); },
    );
  });
}
