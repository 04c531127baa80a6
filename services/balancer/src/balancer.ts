import {
  BALANCER_QUEUE, checkVersion, decode, encode, ErrorCodes, newId, parse, parseHeartbeat, poolFromSubject,
  PROTOCOL_VERSION, RETRYABLE_ON_OTHER_NODE, SETTINGS_BUCKET, ShoalError, subjects, validators,
  type ErrorCode, type Heartbeat, type WireError, type StrategyRequest, type Subjects,
  aggregateVectorStoreStats, vectorStoreStatsOfNode, type VectorStoreStatsResponse,
} from '@shoal/protocol';
import { Actor, call, createInbox, inboxPrefixOf, isNoResponders, isTimeout, refusalCounter, Requester, type JetStreamSettings, type Logger, type Msg, type NatsConnection, type Subscription } from '@shoal/runtime';
import { CircuitBreaker } from './circuit.js';
import { HealthView } from './health.js';
import { Membership } from './membership.js';
import { ParkIndex, pinnedCandidate } from './park-index.js';
import { Rewarm, watchConnection } from './outage.js';
import { DEFAULT_HEARTBEAT_LIMITS, refuseHeartbeat, type HeartbeatLimits } from './heartbeat-guard.js';
import { BalancerMetrics, NODE_GAUGE_STATES, type NodeGaugeState, type PlacementResult } from './metrics.js';
import { RuntimeSettings, type PoolPolicy, type SettingRow } from './runtime-settings.js';
import { SettingsStore, type SettingMeta } from './settings.js';
import { Liveness, retryRound, tryBudgetMs } from './tries.js';
import { page, summarize, type PageInfo, type StatusQuery, type StatusSummary } from './status-paging.js';
import { createStrategy, performanceWeights, type PerformanceWeights, type Strategy, type StrategyName } from './strategies/index.js';

/**
 * How a one-shot exec reaches the node. `forward` (default): a hand-off — the
 * node gets `replyTo` = the caller's inbox, answers us `{accepted}` or a
 * refusal we can retry elsewhere, then streams straight to the caller (we copy
 * nothing). `relay`: we ask on our own inbox and copy every message to the
 * caller (a copy per chunk). docs/balancer.md has the measurements.
 */
export type ExecMode = 'forward' | 'relay';

export interface BalancerSettings {
  /** Defaults to a fresh ULID. */
  balancerId?: string;
  prefix: string;
  /** `balancer.strategy`: for pools whose config sets none (see RuntimeSettings). */
  strategy: StrategyName;
  /** Where `strategy` came from, for `shoal status`. */
  strategySource?: string;
  /** Per-pool strategy and acquire deadline from this balancer's config (the same file the nodes read). */
  pools?: Record<string, PoolPolicy>;
  performanceWeights: PerformanceWeights;
  suspectAfterIntervals: number;
  goneAfterIntervals: number;
  circuitFailureThreshold: number;
  circuitCooldownMs: number;
  /** Default `forward`. */
  execMode?: ExecMode;
  /** Longest time `start` waits for the first heartbeats before joining the queue group. Default 1100 ms. */
  warmupMs?: number;
  /** Longest sweep period; it shortens to the fastest node heartbeat. Default 1000 ms. */
  sweepIntervalMs?: number;
  /** KV bucket of operator settings. Default SETTINGS_BUCKET. */
  settingsBucket?: string;
  /** Replicas, storage and domain of the settings bucket (the `jetstream` config section). */
  jetstream?: JetStreamSettings;
  /** How long start waits to read the stored settings (see SettingsStoreOptions.startWaitMs). */
  settingsStartWaitMs?: number;
  /** Bounds on heartbeats (heartbeat-guard.ts). */
  heartbeatLimits?: Partial<HeartbeatLimits>;
  /** Register with NATS's services API (`$SRV.*`); default true. */
  micro?: boolean;
}

/** Below this much time left, no new try is started. */
const MIN_TRY_MS = 3;
/** Rounds of "every candidate failed, wait and try them all again". */
const MAX_RETRY_ROUNDS = 3;
const BACKOFF_BASE_MS = 20;
const BACKOFF_MAX_MS = 200;

/** Time kept back from the node's timeout so that its answer (POOL_TIMEOUT too) reaches the caller before the deadline. */
/**
 * Time kept back from the node's deadline for its answer to reach us: the
 * node starts its clock on receipt, so a POOL_TIMEOUT sent at its deadline
 * must still beat ours. Too small, and a busy but healthy node's refusals
 * arrive late, look like timeouts, and trip its circuit.
 */
function margin(remaining: number): number {
  return Math.min(250, Math.max(20, remaining * 0.1));
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Outcome of one try on one node. */
type Try = { done: true; result: 'success' | 'error' | 'unreachable' } | { done: false; err: ShoalError; result: PlacementResult };

/** A try in flight on a node; aborted when the node turns suspect, restarts or is swept. */
interface Pending { abort(err: ShoalError): void }

export interface NodeStatus {
  nodeId: string;
  state: string;
  eligible: boolean;
  draining: boolean;
  unhealthy: boolean;
  circuit: string;
  host: string;
  pid: number;
  startedAt: number;
  silentMs: number;
  inFlight: number;
  weight: number | null;
  pools: Heartbeat['pools'];
  /** The health-checkers' verdict in force, if any. */
  health: { healthy: boolean; reason?: string; since: number; at: number; checkerId: string; pools: Record<string, { healthy: boolean; reason?: string }> } | null;
}

export interface BalancerStatus {
  balancerId: string;
  /** The runtime override when an operator set one, else `balancer.strategy`; each pool's own is in `settings.values`. */
  strategy: StrategyName;
  performanceWeights: PerformanceWeights;
  execMode: ExecMode;
  /** `values`: every runtime-changeable setting with its value and source (config layer, or `runtime` with by/at). */
  settings: { bucket: string; watched: boolean; values: SettingRow[] };
  startedAt: number;
  /** Totals over every known node, per pool: the same size at 10 or 10,000 nodes. */
  summary: StatusSummary;
  /** One page of nodes (see `page`), in node id order. */
  nodes: NodeStatus[];
  page: PageInfo;
}

/**
 * A balancer replica. Every replica hears every heartbeat (no queue group)
 * and keeps its own view; requests arrive through the replicas' queue group,
 * so any one of them may place any request. Nothing here is shared between
 * replicas except the operator settings in KV.
 */
export class Balancer extends Actor {
  readonly balancerId: string;
  readonly membership: Membership;
  readonly circuit: CircuitBreaker;
  readonly health: HealthView;
  readonly metrics: BalancerMetrics;
  readonly startedAt = Date.now();
  private readonly s: Subjects;
  private readonly settings: SettingsStore;
  private readonly execMode: ExecMode;
  /** Requests to nodes, without nats.js's per-request error object (see Requester). */
  private readonly requester: Requester;
  /** Asks a node that is slow to answer a try whether it is still there. */
  private readonly liveness: Liveness;
  private readonly runtime: RuntimeSettings;
  /** One strategy instance per pool: round-robin positions and smooth weights are per pool. */
  private readonly strategies = new Map<string, Strategy>();
  private readonly pending = new Map<string, Set<Pending>>();
  private readonly requestSubs: Subscription[] = [];
  private readonly lastHb = new Map<string, Heartbeat>();
  /** Parking key → the node whose heartbeat lists it. */
  private readonly parked = new ParkIndex();
  private readonly lastState = new Map<string, string>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private firstHeartbeat: (() => void) | undefined;
  private inFlight = 0;
  private idle: (() => void) | undefined;
  private stopping = false;
  private readonly hbLimits: HeartbeatLimits;
  /** After our own NATS outage: wait for fresh heartbeats before placing or answering NO_NODES. */
  private readonly rewarm = new Rewarm(() => Math.min(5000, Math.max(this.cfg.warmupMs ?? 1100, 1.5 * Math.max(0, ...[...this.lastHb.values()].map((hb) => hb.intervalMs)))));
  /** Called after each heartbeat is taken in (the status page's live feed). */
  onHeartbeatSeen: ((hb: Heartbeat) => void) | undefined;
  /** Called with settings-bucket keys other services own (`target.*`, `health.*`), for the status page. */
  onForeignSetting: ((key: string, value: unknown) => void) | undefined;

  constructor(nc: NatsConnection, log: Logger, private readonly cfg: BalancerSettings) {
    const balancerId = cfg.balancerId ?? newId();
    super(nc, log.child({ balancer: balancerId }));
    this.balancerId = balancerId;
    this.s = subjects(cfg.prefix);
    this.execMode = cfg.execMode ?? 'forward';
    this.hbLimits = { ...DEFAULT_HEARTBEAT_LIMITS, ...cfg.heartbeatLimits };
    this.requester = new Requester(nc);
    this.liveness = new Liveness(this.requester, (id) => this.s.nodeStatus(id));
    this.membership = new Membership({ suspectAfterIntervals: cfg.suspectAfterIntervals, goneAfterIntervals: cfg.goneAfterIntervals });
    this.circuit = new CircuitBreaker({ failureThreshold: cfg.circuitFailureThreshold, cooldownMs: cfg.circuitCooldownMs });
    this.health = new HealthView(this.membership, this.log);
    this.runtime = new RuntimeSettings({ strategy: cfg.strategy, strategySource: cfg.strategySource, performanceWeights: performanceWeights(cfg.performanceWeights), pools: cfg.pools });
    createStrategy(cfg.strategy, { performanceWeights: performanceWeights(cfg.performanceWeights) }); // fail at start on a bad name
    this.metrics = new BalancerMetrics(balancerId, () => this.nodeStateCounts());
    refusalCounter(this.metrics.registry, this.refusals);
    this.settings = new SettingsStore(nc, this.log, cfg.settingsBucket ?? SETTINGS_BUCKET, {
      strategy: (v, rev, meta) => this.applyStrategy(v, rev, meta),
      weight: (nodeId, w, rev, meta) => this.applyWeight(nodeId, w, rev, meta),
      health: (nodeId, v) => this.health.apply(nodeId, v),
      other: (key, value) => this.onForeignSetting?.(key, value),
    }, { bucket: cfg.jetstream, ...(cfg.settingsStartWaitMs !== undefined ? { startWaitMs: cfg.settingsStartWaitMs } : {}) });
  }

  /** The runtime override if an operator set one, else `balancer.strategy`. */
  get strategy(): StrategyName {
    return this.runtime.strategyOf('').value;
  }

  /** The strategy `pool` is placed with now, and where it came from. */
  strategyOf(pool: string): SettingRow & { value: StrategyName } {
    return this.runtime.strategyOf(pool);
  }

  /**
   * Hear heartbeats and read the settings first, so that the replica's first
   * placement already knows the nodes and the operator's strategy; then join
   * the queue groups.
   */
  async start(): Promise<void> {
    const s = this.s;
    const heard = new Promise<void>((resolve) => { this.firstHeartbeat = resolve; });
    this.listen(s.anyHeartbeat, (m) => this.onHeartbeat(m));
    this.listen(s.anyHealthVerdict, (m) => this.health.onMessage(m.data));
    watchConnection(this.nc, {
      disconnect: () => this.membership.freeze(Date.now()),
      reconnect: () => { const now = Date.now(); this.membership.thaw(now); this.rewarm.reconnected(now); this.log.info('reconnected; waiting for fresh heartbeats before placing'); },
    });
    await this.flushed();
    await this.settings.start();
    await this.warmup(heard);
    // Admin endpoints are micro endpoints ($SRV.STATS); acquire/exec stay plain queue subscriptions (hot path).
    if (this.cfg.micro !== false) {
      await this.registerMicro({
        name: 'shoal-balancer',
        description: 'Shoal balancer: places acquires and one-shot execs on pool-nodes',
        metadata: { balancerId: this.balancerId, prefix: s.prefix, data_plane: `${s.anyPoolAcquire},${s.anyPoolExec}`, data_plane_queue: BALANCER_QUEUE },
      });
    }
    this.requestSubs.push(
      this.listen(s.anyPoolAcquire, (m) => this.tracked(() => this.onAcquire(m)), { queue: BALANCER_QUEUE }),
      this.listen(s.anyPoolExec, (m) => this.tracked(() => this.onExec(m)), { queue: BALANCER_QUEUE }),
      this.listen(s.adminStatusOf(this.balancerId), (m) => this.onStatus(m)),
      this.listen(s.adminBalancers, (m) => this.onStatus(m)),
    );
    this.endpoint('strategy', s.adminStrategy, (m) => this.onStrategy(m), { queue: BALANCER_QUEUE });
    this.endpoint('weight', s.adminWeight, (m) => this.onWeight(m), { queue: BALANCER_QUEUE });
    this.endpoint('settings-reset', s.adminSettingsReset, (m) => this.onSettingsReset(m), { queue: BALANCER_QUEUE });
    this.endpoint('status', s.adminStatus, (m) => this.onStatus(m), { queue: BALANCER_QUEUE });
    await this.flushed();
    this.scheduleSweep();
    this.log.info('balancer ready', { strategy: this.strategy, execMode: this.execMode, nodes: this.membership.nodes(Date.now()).length });
  }

  /**
   * Stop taking requests and let the ones in flight finish (each is bounded
   * by its deadline, and this by `graceMs`). Heartbeats and the sweep go on
   * meanwhile, so a try on a node that dies now is still given up on time.
   */
  async stop(graceMs = 10_000): Promise<void> {
    await Promise.allSettled(this.requestSubs.splice(0).map((sub) => sub.drain()));
    if (this.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((r) => { this.idle = r; timer = setTimeout(r, graceMs); });
      clearTimeout(timer);
    }
    this.stopping = true;
    clearTimeout(this.sweepTimer);
    this.settings.stop();
    await this.unlisten();
  }

  /** Wait for a first heartbeat, then one full interval of the nodes heard so far, so that all of them are known. */
  private async warmup(heard: Promise<void>): Promise<void> {
    const until = Date.now() + (this.cfg.warmupMs ?? 1100);
    const left = () => Math.max(0, until - Date.now());
    await Promise.race([heard, sleep(left())]);
    const longest = Math.max(0, ...[...this.lastHb.values()].map((hb) => hb.intervalMs));
    if (longest > 0) await sleep(Math.min(left(), longest * 1.1));
  }

  private tracked(fn: () => Promise<void> | void): Promise<void> | void {
    this.inFlight++;
    const done = () => { if (--this.inFlight === 0 && this.idle) this.idle(); };
    let p: Promise<void> | void;
    try {
      p = fn();
    } catch (err) {
      done();
      throw err;
    }
    if (!p) return done();
    return p.finally(done);
  }

  // ---- membership --------------------------------------------------------

  private onHeartbeat(m: Msg): void {
    let hb: Heartbeat;
    try {
      hb = parseHeartbeat(m.data);
    } catch (err) {
      this.log.debug('ignoring a bad heartbeat', { subject: m.subject, err: (err as Error).message });
      return;
    }
    const now = Date.now();
    const refused = refuseHeartbeat(hb, m.subject.slice(m.subject.lastIndexOf('.') + 1), now, { has: this.membership.has(hb.nodeId), count: this.membership.size }, this.hbLimits);
    if (refused) { this.refusals.refuse(`heartbeat_${refused}`, { subject: m.subject, nodeId: hb.nodeId }); return; }
    const r = this.membership.observe(hb, now);
    if (r.kind === 'stale') return;
    this.lastHb.set(hb.nodeId, hb);
    this.rewarm.heardFrom(hb.nodeId);
    this.parked.observe(hb);
    if (r.kind === 'joined') {
      this.log.info('node joined', { nodeId: hb.nodeId, host: hb.host, pid: hb.pid, pools: Object.keys(hb.pools) });
      this.health.reapply(hb.nodeId);
    }
    if (r.kind === 'restarted') {
      this.log.info('node restarted', { nodeId: hb.nodeId });
      this.circuit.forget(hb.nodeId);
      this.abortTries(hb.nodeId, 'restarted');
    }
    for (const id of r.replaced) {
      this.log.info('node replaced by a new id from the same process', { old: id, nodeId: hb.nodeId });
      this.forgetNode(id, 'replaced');
    }
    this.firstHeartbeat?.();
    this.firstHeartbeat = undefined;
    this.onHeartbeatSeen?.(hb);
  }

  /** Sweep at least every `sweepIntervalMs`, and as often as the fastest node beats, so a silent node is noticed within about an interval. */
  private scheduleSweep(): void {
    const fastest = Math.min(...[...this.lastHb.values()].map((hb) => hb.intervalMs));
    const period = Math.max(50, Math.min(this.cfg.sweepIntervalMs ?? 1000, Number.isFinite(fastest) ? fastest : Infinity));
    this.sweepTimer = setTimeout(() => {
      try {
        this.sweep(Date.now());
      } catch (err) {
        this.log.error('sweep failed', { err: (err as Error).stack });
      }
      if (!this.stopping) this.scheduleSweep();
    }, period);
  }

  /** Drop gone nodes, log state changes, and give up on tries pending on nodes that are no longer alive. */
  sweep(now: number): void {
    for (const v of this.membership.nodes(now)) {
      const prev = this.lastState.get(v.nodeId);
      if (prev !== v.state) {
        this.lastState.set(v.nodeId, v.state);
        if (prev !== undefined || v.state !== 'alive') this.log.info('node state', { nodeId: v.nodeId, from: prev ?? null, to: v.state, silentMs: v.silentMs });
      }
      if (v.state !== 'alive') this.abortTries(v.nodeId, v.state);
    }
    for (const id of this.membership.sweep(now)) {
      this.log.warn('node gone; its leases are lost', { nodeId: id });
      // Holders that cannot hear heartbeats learn it here (those that can knew sooner).
      this.announceGone(id, this.lastHb.get(id)?.startedAt, now);
      this.forgetNode(id, 'gone');
      this.metrics.forgetNode(id);
    }
  }

  private announceGone(nodeId: string, startedAt: number | undefined, now: number): void {
    try {
      this.nc.publish(this.s.nodeEvents(nodeId), encode({ v: PROTOCOL_VERSION, nodeId, gone: true, ...(startedAt !== undefined ? { startedAt } : {}), reason: 'no heartbeats', at: now, by: this.balancerId }));
    } catch (err) {
      this.log.debug('node event not sent', { err: (err as Error).message });
    }
  }

  private forgetNode(nodeId: string, why: string): void {
    this.abortTries(nodeId, why);
    if (this.pending.get(nodeId)?.size === 0) this.pending.delete(nodeId);
    this.circuit.forget(nodeId);
    this.lastHb.delete(nodeId);
    this.lastState.delete(nodeId);
    this.parked.forget(nodeId);
  }

  private abortTries(nodeId: string, why: string): void {
    const set = this.pending.get(nodeId);
    if (!set || set.size === 0) return;
    const err = new ShoalError(ErrorCodes.UNAVAILABLE, `node ${nodeId} is ${why}`, { details: { reason: why, nodeId } });
    for (const p of [...set]) p.abort(err);
  }

  // ---- settings ------------------------------------------------------------

  private applyStrategy(v: StrategyRequest | undefined, revision: number, meta?: SettingMeta): void {
    if (v) createStrategy(v.strategy, { performanceWeights: performanceWeights(v.performanceWeights ?? this.cfg.performanceWeights) }); // throws on a bad value before anything changes
    if (this.runtime.setOverride(v, revision, meta)) {
      this.strategies.clear();
      if (v) this.log.info('strategy set', { strategy: v.strategy, performanceWeights: v.performanceWeights ?? null, revision, by: meta?.by ?? null });
      else this.log.info('strategy back to the config', { revision });
    }
  }

  private applyWeight(nodeId: string, weight: number | undefined, revision: number, meta?: SettingMeta): void {
    this.membership.setWeight(nodeId, weight);
    this.runtime.setWeight(nodeId, weight, revision, meta);
    this.log.info('node weight set', { nodeId, weight: weight ?? null, revision, by: meta?.by ?? null });
  }

  /** Created once per pool and kept until the override changes (the config does not change at runtime). */
  private strategyFor(pool: string): Strategy {
    let st = this.strategies.get(pool);
    if (!st) {
      const eff = this.runtime.strategyOf(pool);
      st = createStrategy(eff.value, { performanceWeights: eff.performanceWeights });
      this.strategies.set(pool, st);
    }
    return st;
  }

  // ---- requests ------------------------------------------------------------

  /**
   * Decode, check the version and validate; keep the raw map so fields this
   * version does not know still reach the node. The pool of the body must be
   * the pool of the subject.
   */
  private read<K extends 'acquire' | 'exec'>(kind: K, m: Msg, pool: string): { raw: Record<string, unknown>; req: ReturnType<(typeof validators)[K]> } {
    const raw = decode(m.data);
    checkVersion(raw);
    const req = validators[kind](raw, '') as ReturnType<(typeof validators)[K]>;
    if (req.pool !== pool) {
      throw new ShoalError(ErrorCodes.BAD_REQUEST, `field pool: ${JSON.stringify(req.pool)} does not match the subject's pool ${JSON.stringify(pool)}`, { details: { field: 'pool' } });
    }
    // `onlyParked` is for a node asked directly; through a balancer the strategy's node would refuse a miss (NOT_PARKED).
    delete raw.onlyParked;
    return { raw, req };
  }

  private onAcquire(m: Msg): Promise<void> | void {
    return this.serve('acquire', m, (pool, raw, deadline) =>
      this.place(m, pool, deadline, (nodeId, remaining) => this.tryAcquire(m, pool, raw, nodeId, remaining), this.parked.on(pool, raw.park)));
  }

  /**
   * Both client-facing requests: validate (a bad one gets its typed error
   * here), start the deadline at arrival, place, and count the outcome.
   */
  private serve(kind: 'acquire' | 'exec', m: Msg, run: (pool: string, raw: Record<string, unknown>, deadline: number) => Promise<string>): Promise<void> | void {
    const t0 = performance.now();
    const arrived = Date.now();
    const pool = poolFromSubject(m.subject, this.s.prefix) ?? '';
    let r: { raw: Record<string, unknown>; req: { timeoutMs?: number } };
    try {
      r = this.read(kind, m, pool);
    } catch (err) {
      return this.rejected(m, pool, kind, t0, err);
    }
    // No deadline from the client: the pool's acquire_timeout (as this balancer's config has it).
    return run(pool, r.raw, arrived + (r.req.timeoutMs ?? this.runtime.acquireTimeoutOf(pool))).then((result) => {
      this.metrics.done(this.poolLabel(pool), kind, result, performance.now() - t0);
    });
  }

  /**
   * Pick a node, try it, and on a retryable failure try the next one, until
   * one answers or the deadline comes. When every candidate has failed, wait
   * a little and go round again (a few rounds at most). Returns the result
   * label; the caller has had its one reply.
   */
  private async place(m: Msg, pool: string, deadline: number, attempt: (nodeId: string, remaining: number) => Promise<Try>, prefer?: string): Promise<string> {
    const excluded = new Set<string>();
    let lastErr: ShoalError | undefined;
    let rounds = 0;
    for (;;) {
      // Stopping, connection closed: no node can be asked, nor the caller answered (each try would fail at once).
      if (this.nc.isClosed()) return 'closed';
      const now = Date.now();
      const remaining = deadline - now;
      if (remaining < MIN_TRY_MS) {
        return this.fail(m, lastErr ?? new ShoalError(ErrorCodes.POOL_TIMEOUT, `pool ${pool}: no node answered within the deadline`));
      }
      // A parked resource's node first (affinity): the whole candidate list then (one map read per node), else a bounded sample.
      const allow = (id: string) => !excluded.has(id) && this.rewarm.allows(id, now) && (!this.breakerOn(pool, id) || this.circuit.available(id, now));
      const candidates = this.usable(pool, prefer !== undefined ? this.membership.candidates(pool, now, { allow }) : this.membership.sample(pool, now, { allow }));
      // If the parked node cannot serve, the strategy picks among the rest.
      const pinned = pinnedCandidate(candidates, prefer);
      const chosen = pinned ?? (candidates.length > 0 ? this.strategyFor(pool).select(candidates) : undefined);
      if (!chosen && lastErr === undefined && this.rewarm.active(now)) {
        // Just reconnected: the nodes are coming back; wait for them rather than answer NO_NODES.
        await sleep(Math.min(25, remaining - MIN_TRY_MS));
        continue;
      }
      if (!chosen) {
        if (lastErr === undefined) {
          const err = this.noNodes(pool, now);
          this.metrics.placement(this.poolLabel(pool), '', 'no_nodes');
          return this.fail(m, err);
        }
        const wait = Math.min(BACKOFF_BASE_MS * 2 ** rounds, BACKOFF_MAX_MS, remaining - MIN_TRY_MS);
        if (rounds >= MAX_RETRY_ROUNDS || wait <= 0 || !retryRound(lastErr.code)) return this.fail(m, lastErr);
        rounds++;
        excluded.clear();
        await sleep(wait);
        continue;
      }
      const id = chosen.nodeId;
      if (this.breakerOn(pool, id) && !this.circuit.allow(id, now)) {
        excluded.add(id);
        continue;
      }
      const out = await attempt(id, remaining);
      this.metrics.placement(this.poolLabel(pool), id, out.result);
      if (out.done) return out.result;
      this.log.debug('try failed; trying another node', { nodeId: id, pool, result: out.result, code: out.err.code, err: out.err.message });
      excluded.add(id);
      lastErr = out.err;
    }
  }

  /**
   * Nodes whose pool says it cannot make resources (creates failing, nothing
   * idle), or whose pool's backend a health-checker says is down, only get
   * requests when no other node can: then the request itself brings back the
   * backend's own typed error (retryable), or finds it working again.
   */
  private usable<C extends { nodeId: string }>(pool: string, list: C[]): C[] {
    if (list.length < 2) return list;
    const ok = list.filter((c) => this.lastHb.get(c.nodeId)?.pools[pool]?.available !== false && !this.membership.poolUnhealthy(c.nodeId, pool));
    return ok.length > 0 ? ok : list;
  }

  /** The pool's `load_balancing.circuit_breaker_enabled` as the node announces it (default on). */
  private breakerOn(pool: string, nodeId: string): boolean {
    return this.lastHb.get(nodeId)?.pools[pool]?.circuitBreaker !== false;
  }

  private fail(m: Msg, err: ShoalError): string {
    this.replyError(m, err);
    return err.code;
  }

  /**
   * One acquire on one node. The node gets the time left minus a margin, the
   * request waits for the whole time left: a POOL_TIMEOUT from the node still
   * reaches the caller before its deadline, and nothing waits past it.
   */
  private async tryAcquire(m: Msg, pool: string, raw: Record<string, unknown>, nodeId: string, remaining: number): Promise<Try> {
    const subject = this.s.nodeAcquire(nodeId);
    const body = encode({ ...raw, timeoutMs: Math.max(1, Math.floor(remaining - margin(remaining))) });
    let reply: Msg;
    const sentAt = Date.now();
    try {
      reply = await this.requestNode(nodeId, subject, body, remaining, this.budget(nodeId, pool));
    } catch (err) {
      return this.unreachable(nodeId, subject, err, sentAt);
    }
    let code: ErrorCode | undefined;
    try {
      const r = decode(reply.data);
      if (r.ok !== true) code = ((r.error as { code?: ErrorCode } | undefined)?.code) ?? ErrorCodes.INTERNAL;
    } catch (err) {
      this.membership.settled(nodeId);
      this.circuit.failure(nodeId, Date.now(), sentAt);
      return { done: false, result: 'unreachable', err: new ShoalError(ErrorCodes.UNAVAILABLE, `node ${nodeId} sent a malformed reply: ${(err as Error).message}`) };
    }
    // A granted lease stays counted in the node's work until a heartbeat shows it.
    if (code === undefined) this.membership.granted(nodeId);
    else this.membership.settled(nodeId);
    // It answered: the node is up, whatever it said.
    this.circuit.success(nodeId, sentAt);
    if (code !== undefined && RETRYABLE_ON_OTHER_NODE.has(code)) {
      return { done: false, result: 'refused', err: readError(reply.data) };
    }
    this.respond(m, reply.data);
    return { done: true, result: code === undefined ? 'success' : 'error' };
  }

  /**
   * A request to a node, counted in the node's in-flight placements and
   * abandoned if the node turns suspect first. A lease granted after we gave
   * up is handed back so it does not sit out its TTL.
   */
  private budget(nodeId: string, pool: string): number {
    return tryBudgetMs(this.lastHb.get(nodeId)?.pools[pool]?.latencyMs);
  }

  private async requestNode(nodeId: string, subject: string, body: Uint8Array, timeout: number, budgetMs?: number): Promise<Msg> {
    this.membership.placed(nodeId);
    let set = this.pending.get(nodeId);
    if (!set) this.pending.set(nodeId, (set = new Set()));
    let abort!: (err: ShoalError) => void;
    const aborted = new Promise<never>((_, reject) => { abort = reject; });
    const entry: Pending = { abort: (err) => abort(err) };
    set.add(entry);
    // A lease granted after this try gave up (timeout) goes straight back to the node.
    const req = this.requester.request(subject, body, timeout, (data) => this.returnLateLease(nodeId, data));
    // A node that dies (or hangs) under the try is found out by a liveness check, not by the deadline.
    const unwatch = budgetMs !== undefined && budgetMs < timeout ? this.liveness.watch(nodeId, budgetMs, timeout, (err) => entry.abort(err)) : undefined;
    try {
      return await Promise.race([req, aborted]);
    } catch (err) {
      this.membership.settled(nodeId);
      if (err instanceof ShoalError && err.details?.reason !== 'timeout') req.then((late) => this.returnLateLease(nodeId, late.data), () => {});
      throw err;
    } finally {
      unwatch?.();
      set.delete(entry);
    }
  }

  private returnLateLease(nodeId: string, data: Uint8Array): void {
    try {
      const r = decode(data);
      const { leaseId, secret } = (r.data ?? {}) as { leaseId?: unknown; secret?: unknown };
      if (r.ok !== true || typeof leaseId !== 'string') return;
      this.nc.publish(this.s.leaseRelease(nodeId), encode({ v: PROTOCOL_VERSION, leaseId, secret }));
      this.log.info('returned a lease granted after the try was abandoned', { nodeId, leaseId });
    } catch {
      // Nothing useful to do: the lease expires on its own.
    }
  }

  /** No responders, no answer in time, or the node turned suspect: its fault, so the circuit hears of it. */
  private unreachable(nodeId: string, subject: string, err: unknown, sentAt: number): Try {
    const now = Date.now();
    const reason = err instanceof ShoalError ? err.details?.reason : isTimeout(err) ? 'timeout' : isNoResponders(err) ? 'no_responders' : undefined;
    if (reason === 'timeout' || reason === 'no_responders') {
      // No responders means the node is gone. A timeout from a node that still heartbeats
      // means it is busy, not broken: try elsewhere, but leave its circuit alone.
      if (reason === 'no_responders' || this.membership.state(nodeId, now) !== 'alive') this.circuit.failure(nodeId, now, sentAt);
      return { done: false, result: 'unreachable', err: new ShoalError(ErrorCodes.UNAVAILABLE, `node ${nodeId}: ${reason === 'timeout' ? 'no answer in time' : 'no responders'} on ${subject}`, { details: { reason, nodeId } }) };
    }
    if (err instanceof ShoalError && reason !== 'closed') {
      // Abandoned because the node turned suspect.
      this.circuit.failure(nodeId, now, sentAt);
      return { done: false, result: 'unreachable', err };
    }
    // Our own connection failing is not the node's fault (and a probe's outcome will not come).
    this.circuit.abandon(nodeId);
    return { done: false, result: 'unreachable', err: new ShoalError(ErrorCodes.UNAVAILABLE, `request to node ${nodeId} failed: ${(err as Error).message}`, { details: { nodeId } }) };
  }


  /** The error to give when no node can be tried at all, saying why. */
  private noNodes(pool: string, now: number): ShoalError {
    const views = this.membership.nodes(now);
    if (views.length === 0) {
      return new ShoalError(ErrorCodes.NO_NODES, `no pool nodes known to balancer ${this.balancerId} (no heartbeats heard)`);
    }
    const withPool = views.filter((v) => v.pools.includes(pool));
    if (withPool.length === 0) {
      const pools = [...new Set(views.flatMap((v) => v.pools))].sort();
      return new ShoalError(ErrorCodes.POOL_NOT_FOUND, `no known node has pool ${pool} (${views.length} nodes known; pools: ${pools.join(', ') || 'none'})`, { details: { pool } });
    }
    const why: Record<string, number> = {};
    for (const v of withPool) {
      const c = this.circuit.state(v.nodeId, now);
      const reason = v.state !== 'alive' ? v.state : v.draining ? 'draining' : v.unhealthy ? 'unhealthy' : c !== 'closed' ? `circuit ${c}` : (v.weight === 0 ? 'weight 0' : 'not placeable');
      why[reason] = (why[reason] ?? 0) + 1;
    }
    const detail = Object.entries(why).map(([k, n]) => `${n} ${k}`).join(', ');
    return new ShoalError(ErrorCodes.NO_NODES, `no eligible node for pool ${pool}: ${withPool.length} known with it (${detail})`, { details: { pool, ...why } });
  }

  // ---- one-shot exec -------------------------------------------------------

  private onExec(m: Msg): Promise<void> | void {
    return this.serve('exec', m, (pool, raw, deadline) => this.execMode === 'relay'
      ? this.place(m, pool, deadline, (nodeId, remaining) => this.tryRelay(m, raw, nodeId, remaining), this.parked.on(pool, raw.park))
      : this.forward(m, pool, raw, deadline));
  }

  /**
   * Hand the call over: the node gets the request with `replyTo` set to the
   * caller's inbox, answers us `{accepted}` once it holds a resource, and
   * streams events and the result straight to the caller. We copy no chunk,
   * yet a refusal or a dead node (no responders, no answer) still lets
   * `place` try another node within the deadline, as for an acquire.
   */
  private forward(m: Msg, pool: string, raw: Record<string, unknown>, deadline: number): Promise<string> {
    // A one-shot with a parking key goes to the key's node too, as an acquire does.
    return this.place(m, pool, deadline, (nodeId, remaining) => this.tryHandOff(m, pool, raw, nodeId, remaining), this.parked.on(pool, raw.park));
  }

  private async tryHandOff(m: Msg, pool: string, raw: Record<string, unknown>, nodeId: string, remaining: number): Promise<Try> {
    const subject = this.s.nodeExec(nodeId);
    // `replyTo` is ours to set, never the client's: only the caller's own inbox receives the stream.
    const { replyTo: _ignored, ...body0 } = raw;
    const body = encode({ ...body0, timeoutMs: Math.max(1, Math.floor(remaining - margin(remaining))), ...(m.reply ? { replyTo: m.reply } : {}) });
    let reply: Msg;
    const sentAt = Date.now();
    try {
      reply = await this.requestNode(nodeId, subject, body, remaining, this.budget(nodeId, pool));
    } catch (err) {
      const t = this.unreachable(nodeId, subject, err, sentAt);
      // Only "no responders" proves the node never got it. After a timeout or an abandoned
      // try, it may be running the exec: another node would run it twice.
      if (t.done || t.err.details?.reason === 'no_responders') return t;
      this.replyError(m, new ShoalError(ErrorCodes.UNAVAILABLE, `node ${nodeId} did not confirm the exec in time; it may have run (not retried elsewhere)`, { details: { reason: 'unconfirmed', nodeId } }));
      return { done: true, result: 'unreachable' };
    }
    this.circuit.success(nodeId, sentAt);
    let code: ErrorCode | undefined;
    try {
      const r = decode(reply.data);
      if (r.ok !== true) code = ((r.error as { code?: ErrorCode } | undefined)?.code) ?? ErrorCodes.INTERNAL;
    } catch {
      code = ErrorCodes.INTERNAL;
    }
    if (code === undefined) {
      // Accepted: the exec runs on; count it on the node for about as long as such a call takes there.
      this.settleLater(nodeId, pool, remaining);
      return { done: true, result: 'success' };
    }
    this.membership.settled(nodeId);
    if (RETRYABLE_ON_OTHER_NODE.has(code)) return { done: false, result: 'refused', err: readError(reply.data) };
    this.respond(m, reply.data);
    return { done: true, result: 'error' };
  }

  /**
   * A handed-off exec's end is not seen here, so its in-flight count (taken
   * by `requestNode`) is released after the time the node says such a call
   * takes (exec latency from its heartbeat), within the caller's deadline.
   */
  private settleLater(nodeId: string, pool: string, remaining: number): void {
    const st = this.lastHb.get(nodeId)?.pools[pool];
    const est = finite(st?.execLatencyMs) * 1.5;
    setTimeout(() => this.membership.settled(nodeId), Math.min(remaining, Math.max(1, est))).unref?.();
  }

  /**
   * Relay: ask the node on our own inbox and copy every message to the
   * caller. The first message decides: a retryable refusal (or no responders)
   * lets `place` try another node; anything else commits to this node.
   */
  private tryRelay(m: Msg, raw: Record<string, unknown>, nodeId: string, remaining: number): Promise<Try> {
    const subject = this.s.nodeExec(nodeId);
    const inbox = createInbox(inboxPrefixOf(this.nc));
    const { replyTo: _ignored, ...body0 } = raw;
    const body = encode({ ...body0, timeoutMs: Math.max(1, Math.floor(remaining - margin(remaining))) });
    this.membership.placed(nodeId);
    const sentAt = Date.now();
    return new Promise<Try>((resolve) => {
      let started = false;
      let finished = false;
      const end = (t: Try | undefined, failure?: boolean) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        sub.unsubscribe();
        this.membership.settled(nodeId);
        if (failure) this.circuit.failure(nodeId, Date.now(), sentAt);
        else this.circuit.success(nodeId, sentAt);
        resolve(t ?? { done: true, result: 'success' });
      };
      const onTimeout = () => {
        const err = new ShoalError(ErrorCodes.UNAVAILABLE, `node ${nodeId}: no answer in time on ${subject}`, { details: { reason: 'timeout', nodeId } });
        if (started) this.replyError(m, err);
        end(started ? undefined : { done: false, result: 'unreachable', err }, true);
      };
      // A long exec: its own deadline counts after the wait for a resource; with keep-alives, silence is what ends it.
      const idleMs = typeof raw.keepAliveMs === 'number' ? raw.keepAliveMs * 4 : undefined;
      let timer = setTimeout(onTimeout, remaining + (typeof raw.execTimeoutMs === 'number' ? raw.execTimeoutMs : 0) + (idleMs ?? 0));
      const sub = this.nc.subscribe(inbox, {
        callback: (_e, msg) => {
          if (finished) return;
          if (!started && msg.headers?.code === 503) {
            end({ done: false, result: 'unreachable', err: new ShoalError(ErrorCodes.UNAVAILABLE, `node ${nodeId}: no responders on ${subject}`, { details: { reason: 'no_responders', nodeId } }) }, true);
            return;
          }
          let last = true;
          try {
            const d = decode(msg.data);
            if (d.ok === true && d.done !== true && typeof d.seq === 'number' && d.seq >= 0) last = false;
            if (!started && d.ok === false) {
              const code = (d.error as { code?: ErrorCode } | undefined)?.code;
              if (code && RETRYABLE_ON_OTHER_NODE.has(code)) {
                end({ done: false, result: 'refused', err: readError(msg.data) });
                return;
              }
            }
          } catch {
            // Not ours to judge: pass it on and stop.
          }
          started = true;
          this.respond(m, msg.data);
          if (last) end(undefined);
          else if (idleMs !== undefined) { clearTimeout(timer); timer = setTimeout(onTimeout, idleMs); }
        },
      });
      this.nc.publish(subject, body, { reply: inbox });
    });
  }

  // ---- admin ---------------------------------------------------------------

  private async onStrategy(m: Msg): Promise<void> {
    try {
      const req = parse('strategy', m.data);
      const value: StrategyRequest = { strategy: req.strategy, ...(req.performanceWeights ? { performanceWeights: req.performanceWeights } : {}) };
      createStrategy(value.strategy, { performanceWeights: value.performanceWeights }); // validate before writing
      const revision = await this.settings.putStrategy(value, req.by);
      this.reply(m, { strategy: this.strategy, performanceWeights: this.runtime.strategyOf('').performanceWeights, revision });
    } catch (err) {
      this.replyError(m, err instanceof RangeError ? new ShoalError(ErrorCodes.BAD_REQUEST, err.message) : err);
    }
  }

  private async onWeight(m: Msg): Promise<void> {
    try {
      const req = parse('weight', m.data);
      // A typo would otherwise sit in the bucket and apply to whatever node takes that id later.
      if (!this.lastHb.has(req.nodeId)) {
        const known = [...this.lastHb.keys()].sort();
        throw new ShoalError(ErrorCodes.BAD_REQUEST, `no node ${req.nodeId} is known to balancer ${this.balancerId} (known: ${known.join(', ') || 'none'}); \`shoal settings reset weight.${req.nodeId}\` removes a weight left by a gone node`, { details: { field: 'nodeId', reason: 'unknown_node', retryable: false } });
      }
      const revision = await this.settings.putWeight(req.nodeId, req.weight, req.by);
      this.reply(m, { nodeId: req.nodeId, weight: req.weight, revision });
    } catch (err) {
      this.replyError(m, err);
    }
  }

  private async onSettingsReset(m: Msg): Promise<void> {
    try {
      const req = parse('settingsReset', m.data);
      const reset = await this.settings.reset(req.key);
      this.log.info('runtime settings reset to the config', { keys: reset, by: req.by ?? null });
      this.reply(m, { reset, strategy: this.strategy });
    } catch (err) {
      this.replyError(m, err);
    }
  }

  private onStatus(m: Msg): void {
    // An empty body is fine; anything else must be a valid status request.
    let q: StatusQuery = {};
    try {
      if (m.data.length > 0) q = parse('status', m.data);
    } catch (err) {
      return this.replyError(m, err);
    }
    // Pages are sized to fit; a page of nodes with many pools each could
    // still be too big for the connection: halve it until it fits.
    const max = this.nc.info?.max_payload ?? 1024 * 1024;
    let st = this.status(Date.now(), q);
    while (encode({ v: PROTOCOL_VERSION, ok: true, data: st }).length > max - 1024 && st.page.limit > 1) {
      st = this.status(Date.now(), { ...q, limit: Math.floor(st.page.limit / 2) });
    }
    this.reply(m, st);
  }

  /**
   * `/vector-store/pool/stats` from this replica's view: ask every known node
   * that has a weaviate pool for its status (in parallel, 1 s each) and sum
   * their connection stats into the design's shape. A node that does not
   * answer is left out, not guessed.
   */
  async vectorStoreStats(pool?: string): Promise<VectorStoreStatsResponse> {
    const ids = [...this.lastHb.entries()]
      .filter(([, hb]) => Object.entries(hb.pools).some(([name, p]) => p.kind === 'weaviate' && (!pool || name === pool)))
      .map(([id]) => id);
    const replies = await Promise.allSettled(ids.map((id) => call<unknown>(this.nc, this.s.nodeStatus(id), {}, 1000)));
    const perNode = replies.flatMap((r) => (r.status === 'fulfilled' ? vectorStoreStatsOfNode(r.value, pool) : []));
    return aggregateVectorStoreStats(perNode);
  }

  /** This replica's view: a summary of every node and one page of them (`q`: pool, node, limit, cursor). */
  status(now = Date.now(), q: StatusQuery = {}): BalancerStatus {
    const all = this.membership.nodes(now).map((v) => ({ ...v, circuit: this.circuit.state(v.nodeId, now), pools: v.heartbeat.pools }));
    const p = page(all, q);
    return {
      balancerId: this.balancerId,
      strategy: this.strategy,
      performanceWeights: this.runtime.strategyOf('').performanceWeights,
      execMode: this.execMode,
      settings: { bucket: this.cfg.settingsBucket ?? SETTINGS_BUCKET, watched: this.settings.ready, values: this.runtime.rows(this.knownPools()) },
      startedAt: this.startedAt,
      summary: summarize(all, (pool) => this.membership.tiers(pool)),
      page: p.page,
      nodes: p.nodes.map((v) => ({
        nodeId: v.nodeId,
        state: v.state,
        eligible: v.eligible,
        draining: v.draining,
        unhealthy: v.unhealthy,
        circuit: v.circuit,
        host: v.host,
        pid: v.pid,
        startedAt: v.startedAt,
        silentMs: v.silentMs,
        inFlight: v.inFlight,
        weight: v.weight ?? null,
        pools: withoutParkingKeys(v.heartbeat.pools),
        health: healthOf(this.health.of(v.nodeId)),
      })),
    };
  }

  // ---- helpers -------------------------------------------------------------

  private rejected(m: Msg, pool: string, op: 'acquire' | 'exec', t0: number, err: unknown): void {
    const e = ShoalError.from(err, ErrorCodes.BAD_REQUEST);
    this.replyError(m, e);
    this.metrics.placement(this.poolLabel(pool), '', 'bad_request');
    this.metrics.done(this.poolLabel(pool), op, e.code, performance.now() - t0);
  }

  /** Send bytes as they are (a node's reply, unchanged). */
  private respond(m: Msg, data: Uint8Array): void {
    if (!m.reply) return;
    try {
      this.nc.publish(m.reply, data);
    } catch (err) {
      this.log.debug('respond failed', { err: (err as Error).message });
    }
  }

  private knownPools(): Set<string> {
    const out = new Set<string>();
    for (const hb of this.lastHb.values()) for (const p of Object.keys(hb.pools)) out.add(p);
    return out;
  }

  /** Pool names come from subjects anyone can publish to: only known pools become metric labels. */
  private poolLabel(pool: string): string {
    return this.membership.hasPool(pool) ? pool : '_unknown';
  }

  private nodeStateCounts(): Record<NodeGaugeState, number> {
    const now = Date.now();
    const counts = Object.fromEntries(NODE_GAUGE_STATES.map((s) => [s, 0])) as Record<NodeGaugeState, number>;
    for (const v of this.membership.nodes(now)) {
      if (v.state === 'alive' || v.state === 'suspect') counts[v.state]++;
      if (v.draining) counts.draining++;
      if (v.unhealthy) counts.unhealthy++;
      const c = this.circuit.state(v.nodeId, now);
      if (c === 'open' || c === 'half_open') counts[c]++;
    }
    return counts;
  }
}

/** The error of a node's error reply (already known to have a code). */
function readError(data: Uint8Array): ShoalError {
  const w = (decode(data).error ?? {}) as Partial<WireError>;
  return ShoalError.fromWire({ code: w.code ?? ErrorCodes.INTERNAL, message: String(w.message ?? w.code), pool: w.pool, details: w.details });
}

/**
 * A parking key is a bearer credential for its conversation (whoever knows it
 * gets the session back): heartbeats carry only hashes of the keys, and status
 * replies and the HTTP API show how many are parked, not even those.
 */
function withoutParkingKeys(pools: Heartbeat['pools']): Heartbeat['pools'] {
  let out: Heartbeat['pools'] | undefined;
  for (const [name, p0] of Object.entries(pools)) {
    // `parked`: the raw keys an older node may still send (never shown, never routed by).
    const p = p0 as typeof p0 & { parked?: unknown };
    if (p.parkedHashes === undefined && p.parkedOmitted === undefined && p.parked === undefined) continue;
    out ??= { ...pools };
    const { parkedHashes, parkedOmitted, parked: _old, ...rest } = p;
    out[name] = { ...rest, parkedCount: (parkedHashes?.length ?? 0) + (parkedOmitted ?? 0) + (Array.isArray(_old) ? _old.length : 0) } as Heartbeat['pools'][string];
  }
  return out ?? pools;
}

function healthOf(v: ReturnType<HealthView['of']>): NodeStatus['health'] {
  return v ? { healthy: v.healthy, ...(v.reason ? { reason: v.reason } : {}), since: v.since, at: v.at, checkerId: v.checkerId, pools: v.pools } : null;
}

function finite(x: number | undefined): number {
  return typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : 0;
}
