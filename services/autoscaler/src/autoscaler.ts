import type { PoolConfig } from '@shoal/config';
import {
  encode, ErrorCodes, isToken, newNodeId, parse, parseHeartbeat, PROTOCOL_VERSION, ShoalError, subjects, decode,
  TARGET_KEY_PREFIX, HEALTH_KEY_PREFIX,
  type Heartbeat, type Subjects, type ScaleRequest,
} from '@shoal/protocol';
import { Actor, call, openBucket, type JetStreamSettings, type KV, type Logger, type Msg, type NatsConnection, type Subscription } from '@shoal/runtime';
import { decide, sampleOf, scalingConfigOf, type Decision, type PoolView, type Sample, type ScalingConfig } from './decide.js';
import { desiredNodes, stabilizeDesired } from './desired.js';
import { LeaderElection } from './leader.js';
import { AutoscalerMetrics } from './metrics.js';
import { spread, type NodeSlot } from './spread.js';

export interface AutoscalerSettings {
  autoscalerId?: string;
  prefix: string;
  settingsBucket: string;
  leaseTtlMs: number;
  intervalMs: number;
  /** Missed heartbeat intervals before a node no longer counts. */
  goneAfterIntervals: number;
  /** The pools' config, as the nodes read it (same file): auto_scaling, scaling_policies, memory limit. */
  pools: Record<string, PoolConfig>;
  /** Replicas, storage and domain of the settings and leader buckets (the `jetstream` config section). */
  jetstream?: JetStreamSettings;
}

/** A pool's cluster-wide target as stored in the settings bucket under `target.<pool>`. */
export interface TargetRecord {
  /** What was asked for (before clamping to what the live nodes hold). */
  target: number;
  by: 'admin' | 'auto';
  at: number;
  epoch: number;
}

interface NodeState { hb: Heartbeat; seenAt: number }
interface Verdict { healthy: boolean; pools: Record<string, { healthy: boolean }> }

/** Per pool, what the leader remembers between ticks. */
interface PoolMemory {
  samples: Sample[];
  lastActionAt?: number;
  desiredHistory: { at: number; desired: number }[];
  lastDecision?: Decision & { at: number };
  lastAction?: Decision & { at: number };
  view?: PoolView;
  desired?: number;
  need?: number;
  applied?: number;
}

/** Seconds of samples kept beyond the longest window a rule reads. */
const KEEP_MARGIN_MS = 5_000;
/** A scale command not yet reflected in a heartbeat is sent again after this many heartbeat intervals. */
const RESEND_AFTER_INTERVALS = 3;

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * The autoscaler actor: observe (heartbeats, health verdicts) → decide (pure
 * functions: decide, spread, desiredNodes) → act (targets to the settings
 * bucket, scale commands stamped with the epoch, desired pool-nodes
 * published). Every replica observes; only the leader decides and acts, and
 * only it answers admin scale and status requests. Each tick recomputes
 * everything from what it observes and what is stored, so it is safe to rerun
 * after a crash or a change of leader.
 */
export class Autoscaler extends Actor {
  readonly autoscalerId: string;
  readonly metrics: AutoscalerMetrics;
  private readonly s: Subjects;
  private readonly election: LeaderElection;
  private readonly nodes = new Map<string, NodeState>();
  private readonly verdicts = new Map<string, Verdict>();
  private readonly targets = new Map<string, TargetRecord>();
  private readonly memory = new Map<string, PoolMemory>();
  private readonly sent = new Map<string, { n: number; at: number }>();
  private leaderSubs: Subscription[] = [];
  private settings: KV | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  /** When this process began hearing heartbeats: it acts only once it has heard every node at least once. */
  private listeningSince = Date.now();

  constructor(nc: NatsConnection, log: Logger, private readonly cfg: AutoscalerSettings) {
    const id = cfg.autoscalerId ?? newNodeId();
    super(nc, log.child({ autoscaler: id }));
    this.autoscalerId = id;
    this.s = subjects(cfg.prefix);
    this.metrics = new AutoscalerMetrics(id);
    this.election = new LeaderElection(nc, {
      id, leaseTtlMs: cfg.leaseTtlMs, settingsBucket: cfg.settingsBucket, log: this.log, ...(cfg.jetstream ? { jetstream: cfg.jetstream } : {}),
      onElected: (epoch) => { void this.onElected(epoch); },
      onDeposed: () => this.onDeposed(),
    });
  }

  async start(): Promise<void> {
    this.listen(this.s.anyHeartbeat, (m) => this.onHeartbeat(m));
    this.listen(this.s.anyHealthVerdict, (m) => this.onVerdict(m));
    // NATS service discovery ($SRV.PING/INFO/STATS), as every Shoal process; SHOAL_MICRO=0 turns it off.
    if (process.env.SHOAL_MICRO !== '0') {
      await this.registerMicro({
        name: 'shoal-autoscaler',
        description: 'Shoal autoscaler: sizes every pool (one leader), publishes desired pool-nodes',
        metadata: { autoscalerId: this.autoscalerId, prefix: this.s.prefix, admin: this.s.anyAdminScale, status: this.s.autoscalerStatus },
      });
    }
    await this.flushed();
    this.listeningSince = Date.now();
    this.election.start();
    this.timer = setInterval(() => { void this.tick(); }, this.cfg.intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.dropLeaderSubs();
    await this.election.stop();
    await this.unlisten();
  }

  get isLeader(): boolean { return this.election.isLeader(); }
  get epoch(): number { return this.election.epoch; }

  // ---- observe -----------------------------------------------------------

  private onHeartbeat(m: Msg): void {
    let hb: Heartbeat;
    try { hb = parseHeartbeat(m.data); } catch { return; }
    this.nodes.set(hb.nodeId, { hb, seenAt: Date.now() });
  }

  private onVerdict(m: Msg): void {
    let v: Record<string, unknown>;
    try { v = decode(m.data); } catch { return; }
    this.noteVerdict(v);
  }

  private noteVerdict(v: Record<string, unknown>): void {
    if (typeof v.nodeId !== 'string' || typeof v.healthy !== 'boolean') return;
    const pools = v.pools && typeof v.pools === 'object' ? v.pools as Record<string, { healthy: boolean }> : {};
    this.verdicts.set(v.nodeId, { healthy: v.healthy, pools });
  }

  private async kv(): Promise<KV> {
    this.settings ??= await openBucket(this.nc, this.cfg.settingsBucket, { ...this.cfg.jetstream, timeoutMs: 2000, log: this.log });
    return this.settings;
  }

  /** A new term: read what the last leader stored (targets, health verdicts), listen for admin requests, act at once. */
  private async onElected(epoch: number): Promise<void> {
    this.metrics.leader.set(1);
    this.metrics.epoch.set(epoch);
    this.memory.clear();
    this.sent.clear();
    try {
      const kv = await this.kv();
      const keys = await kv.keys();
      for await (const k of keys) {
        if (!k.startsWith(TARGET_KEY_PREFIX) && !k.startsWith(HEALTH_KEY_PREFIX)) continue;
        const e = await kv.get(k);
        if (!e || e.operation !== 'PUT') continue;
        try {
          const value = JSON.parse(dec.decode(e.value)) as Record<string, unknown>;
          if (k.startsWith(TARGET_KEY_PREFIX) && typeof value.target === 'number') this.targets.set(k.slice(TARGET_KEY_PREFIX.length), value as unknown as TargetRecord);
          else if (k.startsWith(HEALTH_KEY_PREFIX) && !this.verdicts.has(k.slice(HEALTH_KEY_PREFIX.length))) this.noteVerdict(value);
        } catch { /* not ours to fix */ }
      }
    } catch (err) {
      this.log.warn('could not read stored targets; keeping what is known', { err: (err as Error).message });
    }
    // The cooldown outlives a change of leader: the last step's time is stored with the target.
    for (const [pool, rec] of this.targets) if (Number.isFinite(rec.at)) this.mem(pool).lastActionAt = rec.at;
    if (!this.election.isLeader()) return;
    this.dropLeaderSubs();
    this.leaderSubs.push(this.listen(this.s.anyAdminScale, (m) => this.onAdminScale(m)));
    this.leaderSubs.push(this.listen(this.s.autoscalerStatus, (m) => this.reply(m, this.status())));
    await this.flushed();
    void this.tick();
  }

  private onDeposed(): void {
    this.metrics.leader.set(0);
    this.metrics.clearPools();
    this.dropLeaderSubs();
  }

  private dropLeaderSubs(): void {
    for (const s of this.leaderSubs.splice(0)) {
      const i = this.subs.indexOf(s);
      if (i >= 0) this.subs.splice(i, 1);
      s.unsubscribe();
    }
  }

  /**
   * A process that wins its first election at once has not heard every node
   * yet: spreading over part of them would pile the target up there. Wait
   * until two heartbeat intervals have passed since it began listening.
   */
  private async warm(): Promise<void> {
    const interval = Math.max(0, ...[...this.nodes.values()].map((n) => n.hb.intervalMs));
    const wait = this.listeningSince + 2 * (interval || 1000) - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }

  // ---- the pools as seen now -------------------------------------------

  private liveNodes(now: number): NodeState[] {
    const out: NodeState[] = [];
    for (const [id, n] of this.nodes) {
      if (now - n.seenAt > this.cfg.goneAfterIntervals * n.hb.intervalMs) { this.nodes.delete(id); continue; }
      out.push(n);
    }
    return out;
  }

  /** Nodes that give the pool capacity: alive, not draining, not judged unhealthy, able to create. */
  private slots(pool: string, now: number): { slots: NodeSlot[]; nodes: NodeState[] } {
    const nodes = this.liveNodes(now).filter((n) => {
      const p = n.hb.pools[pool];
      if (!p || n.hb.draining || p.available === false) return false;
      const v = this.verdicts.get(n.hb.nodeId);
      return !(v && (!v.healthy || v.pools[pool]?.healthy === false));
    });
    const slots = nodes.map((n) => {
      const p = n.hb.pools[pool]!;
      return { nodeId: n.hb.nodeId, min: p.min, max: p.max, weight: p.weight, demand: p.active + p.waiting, current: p.target };
    });
    return { slots, nodes };
  }

  private view(pool: string, now: number): { view: PoolView; slots: NodeSlot[]; nodeMax: number } {
    const { slots, nodes } = this.slots(pool, now);
    const ps = nodes.map((n) => n.hb.pools[pool]!);
    const sum = (f: (p: (typeof ps)[number]) => number) => ps.reduce((a, p) => a + f(p), 0);
    const sp = spread(0, slots);
    const stored = this.targets.get(pool);
    const memLimit = (this.cfg.pools[pool]?.resourceLimits.maxTotalMemoryBytes ?? 0) * ps.length;
    const lat = ps.filter((p) => (p.createLatencyMs ?? 0) > 0);
    const view: PoolView = {
      nodes: ps.length,
      active: sum((p) => p.active), waiting: sum((p) => p.waiting), total: sum((p) => p.total), creating: sum((p) => p.creating),
      target: stored ? Math.min(sp.max, Math.max(sp.min, stored.target)) : sum((p) => p.target),
      min: sp.min, max: sp.max,
      requestRate: sum((p) => p.requestRate),
      cpu: nodes.length ? nodes.reduce((a, n) => a + n.hb.cpu, 0) / nodes.length : 0,
      memory: memLimit > 0 ? sum((p) => p.memoryBytes) / memLimit : 0,
      createLatencyMs: lat.length ? lat.reduce((a, p) => a + (p.createLatencyMs ?? 0), 0) / lat.length : 0,
    };
    return { view, slots, nodeMax: Math.max(0, ...ps.map((p) => p.max)) };
  }

  private scalingConfig(pool: string): ScalingConfig {
    return scalingConfigOf(this.cfg.pools[pool], this.cfg.intervalMs);
  }

  private pools(now: number): string[] {
    const names = new Set<string>(this.targets.keys());
    for (const n of this.liveNodes(now)) for (const p of Object.keys(n.hb.pools)) names.add(p);
    return [...names].sort();
  }

  // ---- decide and act ----------------------------------------------------

  /** One control-loop pass over every pool. Idempotent: all of it is recomputed from observations and stored targets. */
  async tick(): Promise<void> {
    if (this.ticking || !this.election.isLeader()) return;
    this.ticking = true;
    try {
      await this.warm();
      const now = Date.now();
      for (const pool of this.pools(now)) await this.tickPool(pool, now);
    } catch (err) {
      this.log.warn('tick failed', { err: (err as Error).message });
    } finally {
      this.ticking = false;
    }
  }

  private mem(pool: string): PoolMemory {
    let m = this.memory.get(pool);
    if (!m) this.memory.set(pool, (m = { samples: [], desiredHistory: [] }));
    return m;
  }

  private async tickPool(pool: string, now: number): Promise<void> {
    const cfg = this.scalingConfig(pool);
    const { view, slots, nodeMax } = this.view(pool, now);
    const m = this.mem(pool);
    const d = decide(view, cfg, { samples: m.samples, lastActionAt: m.lastActionAt }, now);
    m.samples.push(sampleOf(view, now));
    const keep = Math.max(cfg.stabilizationWindowMs, ...cfg.policies.map((p) => p.durationMs), 30_000) + KEEP_MARGIN_MS;
    while (m.samples.length > 0 && m.samples[0]!.at < now - keep) m.samples.shift();
    m.lastDecision = { ...d, at: now };
    m.view = view;
    this.metrics.utilization.set({ pool }, view.active + view.waiting === 0 ? 0 : (view.active + view.waiting) / Math.max(1, view.total + view.creating));

    if (d.direction !== 'none') {
      if (!this.election.isLeader()) return;
      await this.store(pool, { target: d.target, by: 'auto', at: now, epoch: this.epoch });
      m.lastActionAt = now;
      m.lastAction = { ...d, at: now };
      this.metrics.decisions.inc({ pool, direction: d.direction, reason: d.reason });
      this.log.info('scaling decision', { pool, direction: d.direction, reason: d.reason, from: view.target, to: d.target, epoch: this.epoch, ...d.numbers });
    } else if (d.reason !== 'steady' && d.reason !== 'disabled') {
      this.log.debug('scaling held', { pool, reason: d.reason, ...d.numbers });
    }

    const stored = this.targets.get(pool);
    if (stored) {
      const sp = spread(stored.target, slots);
      m.applied = sp.applied;
      this.metrics.target.set({ pool }, sp.applied);
      this.apply(pool, sp.targets, now);
    } else {
      m.applied = view.target;
      this.metrics.target.set({ pool }, view.target);
    }

    const { desired: raw, need } = desiredNodes({ liveNodes: view.nodes, nodeMax, demand: view.active + view.waiting, requested: stored?.target ?? view.target, scaleUpThreshold: cfg.scaleUpThreshold });
    const window = cfg.stabilizationWindowMs;
    const desired = stabilizeDesired(m.desiredHistory, now, window, raw, view.nodes);
    m.desiredHistory.push({ at: now, desired: raw });
    while (m.desiredHistory.length > 1 && m.desiredHistory[1]!.at <= now - window) m.desiredHistory.shift();
    if (m.desired !== desired) this.log.info('desired pool-nodes', { pool, desired, was: m.desired ?? null, live: view.nodes, need, demand: view.active + view.waiting, nodeMax });
    m.desired = desired;
    m.need = need;
    this.metrics.desired.set({ pool }, desired);
    try {
      this.nc.publish(this.s.autoscalerDesired(pool), encode({ v: PROTOCOL_VERSION, pool, desired, live: view.nodes, need, epoch: this.epoch, at: now }));
    } catch { /* connection closing */ }
  }

  private async store(pool: string, rec: TargetRecord): Promise<void> {
    const kv = await this.kv();
    await kv.put(TARGET_KEY_PREFIX + pool, enc.encode(JSON.stringify(rec)));
    this.targets.set(pool, rec);
  }

  /** Send each node whose heartbeat shows another target its share; a command not yet seen in a heartbeat is resent after a few intervals. */
  private apply(pool: string, targets: Record<string, number>, now: number): void {
    for (const [nodeId, n] of Object.entries(targets)) {
      const node = this.nodes.get(nodeId);
      if (!node || node.hb.pools[pool]?.target === n) continue;
      const key = `${nodeId}\0${pool}`;
      const last = this.sent.get(key);
      if (last && last.n === n && now - last.at < RESEND_AFTER_INTERVALS * node.hb.intervalMs) continue;
      this.sent.set(key, { n, at: now });
      void this.command(nodeId, pool, n);
    }
  }

  private async command(nodeId: string, pool: string, n: number): Promise<void> {
    if (!this.election.isLeader()) return;
    const epoch = this.epoch;
    try {
      await call(this.nc, this.s.nodeScale(nodeId), { pool, op: 'target', n, epoch }, 2000);
      this.log.debug('scale command applied', { node: nodeId, pool, n, epoch });
    } catch (err) {
      const e = ShoalError.from(err);
      if (e.code === ErrorCodes.STALE_EPOCH) {
        this.metrics.staleRefusals.inc({ node: nodeId });
        this.log.warn('a node refused our epoch: a newer leader exists', { node: nodeId, epoch });
      } else {
        this.log.debug('scale command failed', { node: nodeId, pool, n, err: e.message });
      }
    }
  }

  // ---- admin -------------------------------------------------------------

  /** `<prefix>.admin.scale.<pool>`: the seed's ScaleUp(n), ScaleDown(n), SetTargetSize(n), cluster-wide. */
  private async onAdminScale(m: Msg): Promise<void> {
    if (!this.election.isLeader()) throw new ShoalError(ErrorCodes.UNAVAILABLE, `autoscaler ${this.autoscalerId} is not the leader`);
    const pool = m.subject.slice(this.s.anyAdminScale.length - 1);
    if (!isToken(pool)) throw new ShoalError(ErrorCodes.BAD_REQUEST, `pool '${pool}' is not a valid name`);
    const req: ScaleRequest = parse('scale', m.data);
    if (req.pool !== pool) throw new ShoalError(ErrorCodes.BAD_REQUEST, `field pool: ${req.pool} does not match the subject's pool ${pool}`);
    await this.warm();
    const now = Date.now();
    const { view, slots } = this.view(pool, now);
    if (slots.length === 0) {
      const known = [...new Set(this.liveNodes(now).flatMap((n) => Object.keys(n.hb.pools)))];
      throw new ShoalError(ErrorCodes.POOL_NOT_FOUND, `no live node has pool ${pool} (pools: ${known.join(', ') || 'none'})`);
    }
    const base = view.target;
    const requested = Math.max(0, req.op === 'up' ? base + req.n : req.op === 'down' ? base - req.n : req.n);
    const sp = spread(requested, slots);
    await this.store(pool, { target: requested, by: 'admin', at: now, epoch: this.epoch });
    const mem = this.mem(pool);
    // An operator's step restarts the cooldown: the autoscaler does not undo it at the next tick.
    mem.lastActionAt = now;
    mem.applied = sp.applied;
    const direction = sp.applied > base ? 'up' : sp.applied < base ? 'down' : 'none';
    if (direction !== 'none') this.metrics.decisions.inc({ pool, direction, reason: 'admin' });
    this.apply(pool, sp.targets, now);
    const clampedTo = sp.applied < requested ? (sp.applied === sp.max ? 'max' : 'min') : sp.applied > requested ? 'min' : undefined;
    this.log.info('admin scale', { pool, op: req.op, n: req.n, from: base, requested, applied: sp.applied, min: sp.min, max: sp.max, epoch: this.epoch });
    this.reply(m, {
      pool, op: req.op, n: req.n, from: base, requested, applied: sp.applied, min: sp.min, max: sp.max,
      clamped: sp.clamped, ...(clampedTo ? { clampedTo } : {}), nodes: sp.targets, epoch: this.epoch, leader: this.autoscalerId,
    });
  }

  status(): Record<string, unknown> {
    const pools: Record<string, unknown> = {};
    for (const [pool, m] of this.memory) {
      const cfg = this.scalingConfig(pool);
      const v = m.view;
      pools[pool] = {
        target: m.applied ?? null,
        requested: this.targets.get(pool)?.target ?? null,
        by: this.targets.get(pool)?.by ?? null,
        utilization: v ? Math.round(((v.active + v.waiting) / Math.max(1, v.total + v.creating)) * 1000) / 1000 : null,
        demand: v ? v.active + v.waiting : null,
        nodes: v?.nodes ?? 0,
        min: v?.min ?? null,
        max: v?.max ?? null,
        desired: m.desired ?? null,
        autoScaling: cfg.enabled,
        predictive: cfg.predictive,
        lastDecision: m.lastAction ? { at: m.lastAction.at, direction: m.lastAction.direction, reason: m.lastAction.reason, target: m.lastAction.target } : null,
        lastTick: m.lastDecision ? { at: m.lastDecision.at, direction: m.lastDecision.direction, reason: m.lastDecision.reason } : null,
      };
    }
    return { leader: this.autoscalerId, epoch: this.epoch, leaseTtlMs: this.cfg.leaseTtlMs, intervalMs: this.cfg.intervalMs, pools };
  }

  /** For the HTTP route: who leads, as this replica knows it. */
  localStatus(): Record<string, unknown> {
    return { autoscalerId: this.autoscalerId, leader: this.election.isLeader(), epoch: this.epoch, knownLeader: this.election.current ?? null, ...(this.election.isLeader() ? this.status() : {}) };
  }
}
