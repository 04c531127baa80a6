import { hostname } from 'node:os';
import {
  encode, ErrorCodes, isInboxSubject, newLeaseId, newNodeId, parse, PROTOCOL_VERSION, SETTINGS_BUCKET, ShoalError, subjects,
  type AcquireRequest, type Heartbeat, type Lease, type LeaseEvent, type PoolStats, type Subjects,
} from '@shoal/protocol';
import { Actor, refusalCounter, type JetStreamSettings, type Logger, type Msg, type NatsConnection } from '@shoal/runtime';
import { systemClock, type Clock } from './clock.js';
import type { Driver, DriverFactory } from './driver.js';
import { NodeMetrics } from './metrics.js';
import { NodeHealth } from './health.js';
import { Pool, type PoolSettings } from './pool.js';
import { StreamOut } from './stream-out.js';
import { kvGates, type GateProvider } from './turn-gate.js';
import { Parking } from './parking.js';
import { OwnWeight } from './own-weight.js';
import { parkedBudget, shareParked } from './park-heartbeat.js';

/** The answer to an `onlyParked` acquire that finds nothing under its key here. */
function notParked(nodeId: string, pool: string): ShoalError {
  return new ShoalError(ErrorCodes.NOT_PARKED, `nothing is parked under the key in pool ${pool} on node ${nodeId}; ask through a balancer`, { details: { retryable: true, nodeId } });
}

/** The answer to an `onlyParked` request while the operator (weight 0) or the health checker has this node (or pool) out of rotation. */
function outOfRotation(nodeId: string, pool: string, reason: 'weight_0' | 'unhealthy'): ShoalError {
  return new ShoalError(ErrorCodes.NOT_PARKED, `node ${nodeId} is out of rotation for pool ${pool} (${reason === 'weight_0' ? 'operator weight 0' : 'health verdict'}); ask through a balancer`, { details: { retryable: true, nodeId, reason } });
}

export interface NodePoolSettings extends PoolSettings {
  driver: string;
  options: Record<string, unknown>;
  resourceLimits: PoolSettings['resourceLimits'] & { maxConcurrentRequests: number; maxPayloadBytes: number };
  /** Told to health-checkers and balancers in heartbeats; `healthCheckIntervalMs` is also how often the pool probes its backend. */
  loadBalancing?: { healthCheckIntervalMs: number; circuitBreakerEnabled: boolean };
}

export interface NodeSettings {
  nodeId?: string;
  prefix: string;
  heartbeatIntervalMs: number;
  drainGraceMs: number;
  maxConcurrentRequests: number;
  /** For memory_usage checks; default the cgroup's limit, else the machine's memory. */
  memoryLimitBytes?: number;
  /** A node unhealthy this long drains itself (0 = never). Default 0. */
  healthCheck?: { drainAfterMs: number };
  pools: Record<string, NodePoolSettings>;
  /** Register with NATS's services API (`$SRV.*`); default true. */
  micro?: boolean;
  /** Replicas, storage and domain of `shoal_turns` and `shoal_parked` (the `jetstream` config section). */
  jetstream?: JetStreamSettings;
}

/** Marks renew and release for admission: never refused for load. */
const LEASE_OP = true;

/** A one-shot's internal lease outlives its exec deadline by this much. */
const ONE_SHOT_TTL_MARGIN_MS = 5_000;

/**
 * The pool-node actor: owns its pools and answers on `shoal.node.<id>.>`.
 * Request handling is the only thing here; every resource decision is the
 * pool's. Guards run in this order on every request: payload size, node
 * in-flight cap, decode+validate, pool lookup, pool in-flight cap.
 */
export class PoolNode extends Actor {
  readonly nodeId: string;
  readonly pools = new Map<string, Pool>();
  /** Each pool's driver, for its one-shot allow-list and its HTTP routes. */
  readonly drivers = new Map<string, Driver>();
  readonly metrics: NodeMetrics;
  readonly health: NodeHealth;
  private readonly s: Subjects;
  private readonly startedAt = Date.now();
  /** Random per process: balancers tell a restart by it, not by timestamps. */
  private readonly instanceId = newLeaseId();
  private readonly inFlightByPool = new Map<string, number>();
  private inFlight = 0;
  private hbSeq = 0;
  /** Heartbeats failing since (a streak is warned about once, not every interval). */
  private hbFailingSince: number | undefined;
  private hbTimer: NodeJS.Timeout | undefined;
  private cpuPrev = process.cpuUsage();
  private cpuPrevAt = Date.now();
  private cpuShare = 0;
  private drainPromise: Promise<{ revoked: number }> | undefined;
  /** Newest autoscaler epoch seen on a scale command: an older leader's commands are refused. */
  private scaleEpoch = 0;
  private readonly parking: Parking;
  private readonly weight: OwnWeight;
  /** Cluster-wide caps (claude-cli `account.max_concurrent_turns`), opened on first use only. */
  private readonly gates: GateProvider;
  /** A drain for exit (SIGTERM) cannot be undone. */
  private finalDrain = false;
  /** Largest payload any pool accepts; checked before decoding anything. */
  private readonly maxPayload: number;

  constructor(
    nc: NatsConnection,
    log: Logger,
    private readonly cfg: NodeSettings,
    driverFor: (kind: string) => DriverFactory,
    private readonly clock: Clock = systemClock,
  ) {
    const nodeId = cfg.nodeId ?? newNodeId();
    super(nc, log.child({ node: nodeId }));
    this.nodeId = nodeId;
    this.s = subjects(cfg.prefix);
    this.metrics = new NodeMetrics(nodeId, () => this.pools.values(), () => this.inFlight);
    this.gates = kvGates(nc, nodeId, Math.random, (msg, fields) => this.log.warn(msg, fields), { ...cfg.jetstream, log: this.log });
    this.parking = new Parking(nc, nodeId, this.log, cfg.jetstream);
    this.weight = new OwnWeight(nc, SETTINGS_BUCKET, nodeId, this.log, cfg.jetstream?.domain);
    refusalCounter(this.metrics.registry, this.refusals);
    for (const [name, pc] of Object.entries(cfg.pools)) {
      const driver = driverFor(pc.driver)({ clock, random: Math.random, options: pc.options, poolName: name, registry: this.metrics.registry, labels: { pool: name, node: nodeId }, log: this.log.child({ pool: name }), gates: this.gates });
      this.drivers.set(name, driver);
      const observer = { ...this.metrics.observer(name, driver.kind, this.log), leaseLost: (leaseId: string, how: 'expired' | 'revoked') => this.leaseLost(leaseId, how) };
      this.pools.set(name, new Pool({ ...pc, probeIntervalMs: pc.loadBalancing?.healthCheckIntervalMs ?? 0 }, driver, clock, Math.random, observer));
      this.inFlightByPool.set(name, 0);
    }
    this.health = new NodeHealth(nodeId, this.pools, this.drivers, {
      memoryLimitBytes: cfg.memoryLimitBytes,
      drainAfterMs: cfg.healthCheck?.drainAfterMs ?? 0,
      drain: () => void this.drain(cfg.drainGraceMs),
    }, this.log);
    this.maxPayload = Math.max(...Object.values(cfg.pools).map((p) => p.resourceLimits.maxPayloadBytes), 1024);
  }

  get draining(): boolean {
    return this.drainPromise !== undefined;
  }

  /** Subscribe, warm the pools up, flush, then announce the node with a first heartbeat. */
  async start(): Promise<void> {
    const s = this.s;
    const id = this.nodeId;
    // Control endpoints are micro endpoints (counted in $SRV.STATS); the data
    // plane stays on plain subscriptions, off the services API's per-message
    // bookkeeping, and is listed in the metadata.
    if (this.cfg.micro !== false) {
      await this.registerMicro({
        name: 'shoal-pool-node',
        description: 'Shoal pool-node: pools of leased resources',
        metadata: { nodeId: id, prefix: s.prefix, pools: [...this.pools.keys()].join(','), data_plane: [s.nodeAcquire(id), s.nodeExec(id), s.leaseExec(id), s.leaseRenew(id), s.leaseRelease(id)].join(',') },
      });
    }
    this.listen(s.nodeAcquire(id), (m) => this.request(m, () => this.onAcquire(m)));
    this.listen(s.nodeExec(id), (m) => this.request(m, () => this.onExec(m)));
    this.listen(s.leaseExec(id), (m) => this.request(m, () => this.onLeaseExec(m)));
    this.listen(s.leaseRenew(id), (m) => this.request(m, () => this.onRenew(m), LEASE_OP));
    this.listen(s.leaseRelease(id), (m) => this.request(m, () => this.onRelease(m), LEASE_OP));
    this.endpoint('scale', s.nodeScale(id), (m) => this.request(m, () => this.onScale(m)));
    this.endpoint('drain', s.nodeDrain(id), (m) => this.onDrain(m));
    this.endpoint('undrain', s.nodeUndrain(id), (m) => this.onUndrain(m));
    this.endpoint('status', s.nodeStatus(id), (m) => this.reply(m, this.status(parse('status', m.data).leases ?? false)));
    // Answered right here, on the event loop: a hung node fails the ping.
    this.listen(s.nodePing(id), (m) => this.reply(m, { nodeId: id }));
    this.listen(s.nodeProbe(id), async (m) => this.reply(m, await this.health.probe()));
    this.listen(s.healthVerdict(id), (m) => this.health.onVerdict(m.data));
    this.weight.start();
    await Promise.all([...this.pools.values()].map((p) => p.start()));
    await this.flushed();
    this.startHeartbeats();
    // A drain (SIGTERM, or an operator) that came during the warm-up: this node is not ready.
    if (this.draining) return;
    this.log.info('pool-node ready', { pools: [...this.pools.keys()], subjects: s.nodeAll(id) });
  }

  /**
   * Admission for every request: size, node cap, then the handler. Lease
   * operations are never refused for load: refusing a release would leak.
   */
  private request(m: Msg, handler: () => Promise<void> | void, isLeaseOp = false): Promise<void> | void {
    if (m.data.length > this.maxPayload) {
      return this.fail(m, new ShoalError(ErrorCodes.BAD_REQUEST, `payload of ${m.data.length} bytes exceeds the limit of ${this.maxPayload} bytes`, { details: { reason: 'payload_too_large', size: m.data.length, limit: this.maxPayload } }));
    }
    if (!isLeaseOp && this.inFlight >= this.cfg.maxConcurrentRequests) {
      return this.fail(m, new ShoalError(ErrorCodes.POOL_BUSY, `node ${this.nodeId} has ${this.inFlight} requests in flight (max_concurrent_requests=${this.cfg.maxConcurrentRequests})`));
    }
    this.inFlight++;
    let pending: Promise<void> | void;
    try {
      pending = handler();
    } catch (err) {
      this.inFlight--;
      return this.fail(m, err);
    }
    // Most requests finish synchronously (an idle resource, a release): no promise for them.
    if (!pending) { this.inFlight--; return; }
    return pending.then(() => { this.inFlight--; }, (err) => { this.inFlight--; this.fail(m, err); });
  }

  private fail(m: Msg, err: unknown): void {
    const e = ShoalError.from(err);
    // A miss of the SDK's direct try is routing, not an error: every key's first acquire after a lost park would count.
    if (e.code !== ErrorCodes.NOT_PARKED) this.metrics.errors.inc({ node: this.nodeId, code: e.code });
    if (e.code === ErrorCodes.INTERNAL) this.log.error('internal error', { subject: m.subject, err: e.message });
    this.replyError(m, e);
  }

  private pool(name: string): Pool {
    const p = this.pools.get(name);
    if (!p) throw new ShoalError(ErrorCodes.POOL_NOT_FOUND, `node ${this.nodeId} has no pool ${name} (has: ${[...this.pools.keys()].join(', ')})`);
    return p;
  }

  /** Per-pool `max_concurrent_requests`, held for the whole request. */
  private async withPoolSlot<T>(pool: Pool, fn: () => Promise<T>): Promise<T> {
    const limit = this.cfg.pools[pool.name]!.resourceLimits.maxConcurrentRequests;
    const n = this.inFlightByPool.get(pool.name)!;
    if (limit > 0 && n >= limit) throw new ShoalError(ErrorCodes.POOL_BUSY, `pool ${pool.name} has ${n} requests in flight (max_concurrent_requests=${limit})`, { pool: pool.numbers() });
    this.inFlightByPool.set(pool.name, n + 1);
    try {
      return await fn();
    } finally {
      this.inFlightByPool.set(pool.name, this.inFlightByPool.get(pool.name)! - 1);
    }
  }

  /**
   * The SDK's direct try at a parked key skips the balancers: it must not
   * skip what they place by too (a chat would stay on a node the operator
   * or the health checker took out). Both are known ahead (a watch, the
   * verdict subject): nothing is read here.
   */
  private checkInRotation(pool: string): void {
    // As the balancers weigh it: the operator's weight, else the pool's configured one.
    if ((this.weight.value ?? this.pool(pool).limits.weight) === 0) throw outOfRotation(this.nodeId, pool, 'weight_0');
    if (this.health.outOfRotation(pool)) throw outOfRotation(this.nodeId, pool, 'unhealthy');
  }

  private checkDraining(): void {
    if (this.draining) throw new ShoalError(ErrorCodes.NODE_DRAINING, `node ${this.nodeId} is draining`);
  }

  private onAcquire(m: Msg): Promise<void> | void {
    const req = parse('acquire', m.data);
    this.checkDraining();
    const pool = this.pool(req.pool);
    if (req.onlyParked && req.park === undefined) throw new ShoalError(ErrorCodes.BAD_REQUEST, 'field onlyParked: only with park', { details: { field: 'onlyParked' } });
    if (req.onlyParked) this.checkInRotation(pool.name);
    if (req.park !== undefined) return this.acquireParked(m, pool, req);
    if (req.options !== undefined) return this.acquireWithOptions(m, pool, req);
    const now = pool.tryAcquire(req);
    if (now) return this.granted(m, pool, now);
    return this.withPoolSlot(pool, () => pool.acquire(req)).then((lease) => this.granted(m, pool, lease));
  }

  /**
   * An acquire with a parking key: the parked resource if it is here (no
   * lookup), or still returning here from its release (waited for), else a
   * fresh one continued where possible.
   */
  private async acquireParked(m: Msg, pool: Pool, req: AcquireRequest): Promise<void> {
    const key = req.park!;
    // Bad options are refused before anything is taken, a parked session included.
    if (req.options !== undefined) pool.checkLeaseOptions(req.options);
    // A miss's fresh acquire gets what is left of the deadline after waiting for a return that did not park.
    const { lease: hit, rest } = await pool.claimKeyed(key, req);
    if (hit) {
      this.granted(m, pool, req.options !== undefined ? await pool.prepareParked(hit.leaseId, req.options as Record<string, unknown>) : { ...hit, park: 'hit' });
      return;
    }
    if (req.onlyParked) throw notParked(this.nodeId, pool.name);
    const lease = await this.withPoolSlot(pool, async () => {
      let l = await pool.acquire(rest);
      if (req.options !== undefined) l = await pool.prepare(l.leaseId, req.options as Record<string, unknown>);
      return this.parking.adopt(pool, this.drivers.get(pool.name)!, l, key);
    });
    this.granted(m, pool, lease);
  }

  /** Per-lease options: refused before anything is taken if the pool does not allow them, applied before the grant. */
  private async acquireWithOptions(m: Msg, pool: Pool, req: AcquireRequest): Promise<void> {
    pool.checkLeaseOptions(req.options);
    const lease = await this.withPoolSlot(pool, async () => pool.prepare((await pool.acquire(req)).leaseId, req.options as Record<string, unknown>));
    this.granted(m, pool, lease);
  }

  private granted(m: Msg, pool: Pool, lease: Lease): void {
    if (lease.reused) this.metrics.reused(pool.name, pool.kind);
    lease.nodeId = this.nodeId;
    lease.nodeStartedAt = this.startedAt;
    this.reply(m, lease);
  }

  /**
   * Tell the holder (on `events.lease.<nodeId>`) that its lease is gone, at
   * once: published before the aborted exec's error, so that the holder sees
   * LEASE_LOST rather than a bare CANCELLED.
   */
  private leaseLost(leaseId: string, how: 'expired' | 'revoked'): void {
    const lost: LeaseEvent['lost'] = [{ leaseId, reason: how === 'expired' ? 'expired' : this.draining ? 'drained' : 'revoked' }];
    const ev: LeaseEvent = { v: PROTOCOL_VERSION, nodeId: this.nodeId, startedAt: this.startedAt, at: Date.now(), lost };
    try {
      this.nc.publish(this.s.leaseEvents(this.nodeId), encode(ev));
    } catch (err) {
      this.log.debug('lease event not sent', { err: (err as Error).message });
    }
  }

  /** One-shot: acquire, exec, release, all inside the node; events stream back on the reply subject. */
  private async onExec(m: Msg): Promise<void> {
    const req = parse('exec', m.data);
    // The stream goes where `replyTo` says: only ever an inbox (no reflection onto, e.g., a drain subject).
    if (req.replyTo !== undefined && !isInboxSubject(req.replyTo)) { this.refusals.refuse('reply_not_inbox', { subject: m.subject, replyTo: req.replyTo.slice(0, 100) }); return; }
    this.checkDraining();
    const pool = this.pool(req.pool);
    if (req.onlyParked && req.park === undefined) throw new ShoalError(ErrorCodes.BAD_REQUEST, 'field onlyParked: only with park', { details: { field: 'onlyParked' } });
    if (req.onlyParked) this.checkInRotation(pool.name);
    const allowed = this.drivers.get(pool.name)!.oneShotOps;
    if (allowed && !allowed.has(req.op)) throw new ShoalError(ErrorCodes.UNSUPPORTED_OP, `op ${req.op} cannot run one-shot on pool ${pool.name} (one-shot ops: ${[...allowed].join(', ')}); acquire a lease for it`);
    await this.withPoolSlot(pool, async () => {
      const timeoutMs = req.timeoutMs ?? this.cfg.pools[pool.name]!.acquireTimeoutMs;
      const deadline = this.clock.now() + timeoutMs;
      // The exec's own deadline (a long turn) when the caller or the pool's driver sets one, else what is left of the call's.
      const fixedMs = req.execTimeoutMs ?? pool.defaultExecTimeoutMs(req.op);
      // Refusals up to here answer `m`: a balancer that handed the call over can still try another node.
      // The lease lives inside this call: its TTL must outlast the exec's deadline (no one renews it).
      if (req.options !== undefined) pool.checkLeaseOptions(req.options);
      const ttl = { ...req, timeoutMs, ttlMs: (fixedMs ?? timeoutMs) + ONE_SHOT_TTL_MARGIN_MS };
      // With a parking key: its parked resource (context intact) if here, else a fresh one continued where possible; parked again after.
      const keyed = req.park !== undefined ? await pool.claimKeyed(req.park, ttl) : undefined;
      let lease = keyed?.lease;
      const hit = lease !== undefined;
      if (!hit && req.onlyParked) throw notParked(this.nodeId, pool.name);
      // What is left of the call's deadline after waiting for a return that did not park.
      lease ??= await pool.acquire(keyed?.rest ?? ttl);
      if (req.options !== undefined) lease = hit ? await pool.prepareParked(lease.leaseId, req.options as Record<string, unknown>) : await pool.prepare(lease.leaseId, req.options as Record<string, unknown>);
      if (!hit && req.park !== undefined) lease = await this.parking.adopt(pool, this.drivers.get(pool.name)!, lease, req.park);
      if (lease.reused) this.metrics.reused(pool.name, pool.kind);
      const out = new StreamOut(this.nc, req.replyTo ?? m.reply, this.log);
      if (req.replyTo) this.reply(m, { accepted: true, nodeId: this.nodeId });
      if (req.keepAliveMs) out.keepAlive(req.keepAliveMs);
      let result: { ok: true; value: unknown } | { ok: false; err: unknown };
      try {
        result = { ok: true, value: await pool.exec(lease.leaseId, req.op, req.args, out.emit, fixedMs ?? Math.max(1, deadline - this.clock.now())) };
      } catch (err) {
        this.metrics.errors.inc({ node: this.nodeId, code: ShoalError.from(err).code });
        result = { ok: false, err };
      }
      // Released before the caller hears the result: its next call with the key finds the resource
      // parked or returning here, never missing. A failed one-shot may have left the resource
      // mid-operation: reset before reuse. (A drain may have revoked the lease under us: nothing to release.)
      const parks = result.ok && req.park !== undefined && pool.parks && !pool.isDraining && pool.holds(lease.leaseId);
      if (pool.holds(lease.leaseId)) {
        if (parks) this.parking.remember(pool.name, req.park!, pool.describeLease(lease.leaseId));
        pool.release(lease.leaseId, !result.ok ? { reset: true } : req.park !== undefined ? { park: req.park } : { reset: false });
      }
      // Parked: the caller's SDK asks this node first for the key's next call.
      if (result.ok) out.done(result.value, parks ? { nodeId: this.nodeId } : undefined);
      else out.fail(result.err);
    });
  }

  private async onLeaseExec(m: Msg): Promise<void> {
    const req = parse('leaseExec', m.data);
    const pool = this.poolOfLease(req.leaseId, req.secret);
    const out = new StreamOut(this.nc, m.reply, this.log);
    if (req.keepAliveMs) out.keepAlive(req.keepAliveMs);
    try {
      out.done(await pool.exec(req.leaseId, req.op, req.args, out.emit, req.timeoutMs));
    } catch (err) {
      this.metrics.errors.inc({ node: this.nodeId, code: ShoalError.from(err).code });
      out.fail(err);
    }
  }

  private onRenew(m: Msg): void {
    const req = parse('renew', m.data);
    this.reply(m, this.poolOfLease(req.leaseId, req.secret).renew(req.leaseId, req.ttlMs));
  }

  private onRelease(m: Msg): void {
    const req = parse('release', m.data);
    const pool = this.poolOfLease(req.leaseId, req.secret);
    // max_parked 0 turns parking off: the release is an ordinary one, and nothing is recorded for a resume.
    // `parked` tells the SDK to ask this node first for the key's next acquire; a return that then fails only costs that one miss.
    const parks = req.park !== undefined && pool.parks && !req.reset && !req.destroy && !pool.isDraining && pool.holds(req.leaseId);
    if (parks) this.parking.remember(pool.name, req.park!, pool.describeLease(req.leaseId));
    pool.release(req.leaseId, req);
    this.reply(m, parks ? { released: req.leaseId, parked: true } : { released: req.leaseId });
  }

  /** The pool of a lease its holder names: a wrong secret is answered exactly as an unknown lease. */
  private poolOfLease(leaseId: string, secret: string | undefined): Pool {
    for (const p of this.pools.values()) if (p.hasLease(leaseId)) { if (p.authorized(leaseId, secret)) return p; break; }
    throw new ShoalError(ErrorCodes.LEASE_NOT_FOUND, `lease ${leaseId} is not held on node ${this.nodeId}`);
  }

  private onScale(m: Msg): void {
    const req = parse('scale', m.data);
    if (req.epoch !== undefined) {
      // A paused ex-leader that wakes up must not undo its successor's commands.
      if (req.epoch < this.scaleEpoch) throw new ShoalError(ErrorCodes.STALE_EPOCH, `scale command from autoscaler epoch ${req.epoch}, older than epoch ${this.scaleEpoch} seen by node ${this.nodeId}`, { details: { epoch: req.epoch, newest: this.scaleEpoch, retryable: false } });
      this.scaleEpoch = req.epoch;
    }
    this.checkDraining();
    const pool = this.pool(req.pool);
    const r = pool.scale(req.op, req.n);
    this.log.info('scaled', { pool: pool.name, op: req.op, n: req.n, ...(req.epoch !== undefined ? { epoch: req.epoch } : {}), ...r });
    this.reply(m, { pool: pool.name, ...r, min: pool.limits.min, max: pool.limits.max });
  }

  private startHeartbeats(): void {
    if (this.hbTimer || this.finalDrain) return;
    this.heartbeat();
    this.hbTimer = setInterval(() => this.heartbeat(), this.cfg.heartbeatIntervalMs);
  }

  /**
   * `shoal undrain`: leave draining. Within the grace period the drain
   * stops and leases and resources stay; once it has destroyed everything,
   * the pools start again and warm up to their targets. Refused, retryable,
   * while the drain is destroying resources (try again in a moment), and
   * always when the node drains to exit.
   */
  private onUndrain(m: Msg): void {
    try {
      if (m.data.length > 0) parse('status', m.data);
      if (!this.draining) return this.reply(m, { nodeId: this.nodeId, draining: false, already: true });
      if (this.finalDrain) throw new ShoalError(ErrorCodes.NODE_DRAINING, `node ${this.nodeId} is draining to exit; it cannot be undrained`, { details: { reason: 'exiting', retryable: false } });
      const busy = [...this.pools.values()].filter((p) => !p.undrainable).map((p) => p.name);
      if (busy.length > 0) throw new ShoalError(ErrorCodes.NODE_DRAINING, `node ${this.nodeId} is still destroying the resources of ${busy.join(', ')}; undrain again in a moment`, { details: { reason: 'destroying', pools: busy, retryable: true } });
      const result: Record<string, string> = {};
      for (const p of this.pools.values()) result[p.name] = String(p.undrain());
      this.drainPromise = undefined;
      this.log.info('undrained', { pools: result });
      this.heartbeat();
      this.startHeartbeats();
      this.reply(m, { nodeId: this.nodeId, draining: false, already: false, pools: result });
    } catch (err) {
      this.replyError(m, err);
    }
  }

  private onDrain(m: Msg): void {
    const req = parse('drain', m.data);
    const already = this.draining;
    void this.drain(req.graceMs ?? this.cfg.drainGraceMs);
    this.reply(m, { nodeId: this.nodeId, draining: true, already });
  }

  /**
   * Refuse new work, let leases finish until the grace period, then destroy
   * everything. Heartbeats keep going (with draining=true) so balancers stop
   * placing here at once. Idempotent.
   */
  drain(graceMs: number, final = false): Promise<{ revoked: number }> {
    if (final) this.finalDrain = true;
    if (!this.drainPromise) {
      this.log.info('draining', { graceMs });
      const p: Promise<{ revoked: number }> = Promise.all([...this.pools.values()].map((pool) => pool.drain(graceMs))).then((rs) => {
        const revoked = rs.reduce((a, r) => a + r.revoked, 0);
        if (rs.some((r) => r.cancelled)) this.log.info('drain cancelled (undrained)', {});
        else this.log.info('drained', { revoked });
        return { revoked };
      });
      this.drainPromise = p;
      // After drainPromise is set, so that this heartbeat already says draining: balancers stop at once.
      this.heartbeat();
    }
    return this.drainPromise;
  }

  /** Stop heartbeats and subscriptions; the caller closes the connection. */
  async stop(): Promise<void> {
    clearInterval(this.hbTimer);
    this.health.stop();
    this.weight.stop();
    await this.unlisten();
    for (const p of this.pools.values()) await p.close();
  }

  heartbeat(): void {
    const now = Date.now();
    const cpu = process.cpuUsage();
    const dt = (now - this.cpuPrevAt) * 1000;
    if (dt > 0) this.cpuShare = (cpu.user - this.cpuPrev.user + cpu.system - this.cpuPrev.system) / dt;
    this.cpuPrev = cpu;
    this.cpuPrevAt = now;
    const mem = process.memoryUsage();
    const hb: Heartbeat = {
      v: PROTOCOL_VERSION,
      nodeId: this.nodeId,
      seq: this.hbSeq++,
      startedAt: this.startedAt,
      instanceId: this.instanceId,
      intervalMs: this.cfg.heartbeatIntervalMs,
      draining: this.draining,
      host: hostname(),
      pid: process.pid,
      inFlight: this.inFlight,
      maxConcurrent: this.cfg.maxConcurrentRequests,
      cpu: this.cpuShare,
      memory: { rss: mem.rss, heapUsed: mem.heapUsed },
      pools: Object.fromEntries([...this.pools.values()].map((p) => [p.name, this.poolStats(p)])),
    };
    let bytes = 0;
    try {
      this.addParked(hb);
      const data = encode(hb);
      bytes = data.length;
      this.nc.publish(this.s.heartbeat(this.nodeId), data);
      if (this.hbFailingSince !== undefined) {
        this.log.info('heartbeats sent again', { failedForMs: Date.now() - this.hbFailingSince });
        this.hbFailingSince = undefined;
      }
    } catch (err) {
      // Without heartbeats balancers declare this node gone: say so, once per streak.
      if (this.hbFailingSince === undefined) {
        this.hbFailingSince = Date.now();
        this.log.warn('heartbeat not sent: balancers will take this node for gone until one is', { err: (err as Error).message, bytes });
      } else {
        this.log.debug('heartbeat not sent', { err: (err as Error).message });
      }
    }
  }

  private poolStats(p: Pool): PoolStats {
    const n = p.numbers();
    const l = p.limits;
    return {
      kind: p.kind, total: n.total, idle: n.idle, active: n.active, creating: n.creating ?? 0, waiting: n.waiting,
      min: l.min, max: l.max, target: p.targetSize, maxWaiting: l.maxWaiting, weight: l.weight,
      latencyMs: p.meter.acquireLatency.value, execLatencyMs: p.meter.execLatency.value,
      errorRate: p.meter.errorRate, requestRate: p.meter.requestRate, reuseRate: p.meter.reuseRate,
      memoryBytes: p.memoryBytes(), createLatencyMs: p.meter.createLatency.value,
      ...p.availability(),
      ...this.loadBalancing(p.name),
    };
  }

  /**
   * Parked-key hashes into the heartbeat, as many as its byte budget allows
   * (within the server's max_payload), newest first; the count of those left
   * out says balancers place those keys by strategy (a holder's SDK still
   * asks the key's node first).
   */
  private addParked(hb: Heartbeat): void {
    const parking = [...this.pools.values()].filter((p) => p.parkedCount > 0);
    if (parking.length === 0) return;
    const budget = parkedBudget(encode(hb).length, this.nc.info?.max_payload);
    const share = shareParked(parking.map((p) => ({ pool: p.name, count: p.parkedCount })), budget);
    for (const p of parking) {
      const n = share.get(p.name) ?? 0;
      const st = hb.pools[p.name]!;
      if (n > 0) st.parkedHashes = p.parkedHashes(n);
      if (n < p.parkedCount) st.parkedOmitted = p.parkedCount - n;
    }
  }

  private loadBalancing(pool: string): Pick<PoolStats, 'healthCheckIntervalMs' | 'circuitBreaker'> {
    const lb = this.cfg.pools[pool]?.loadBalancing;
    return lb ? { healthCheckIntervalMs: lb.healthCheckIntervalMs, circuitBreaker: lb.circuitBreakerEnabled } : {};
  }

  /** Node status for `shoal status` and the HTTP status endpoints. */
  status(withResources: boolean): Record<string, unknown> {
    const pools: Record<string, unknown> = {};
    for (const p of this.pools.values()) {
      const driver = this.drivers.get(p.name)?.stats?.(p);
      pools[p.name] = { ...this.poolStats(p), ...(p.parkedCount > 0 ? { parkedCount: p.parkedCount } : {}), ...(withResources ? p.snapshot() : {}), ...(driver ? { driver } : {}) };
    }
    return { nodeId: this.nodeId, host: hostname(), pid: process.pid, startedAt: this.startedAt, draining: this.draining, inFlight: this.inFlight, pools };
  }
}
