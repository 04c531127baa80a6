import type { Heartbeat, PoolStats } from '@shoal/protocol';
import type { Candidate } from './strategies/types.js';
import { PoolIndex, tierOf, TIERS, type Tier } from './candidate-index.js';

/** Candidates one placement ranks at most: the cost of an acquire does not grow with the number of nodes. */
export const SAMPLE_SIZE = 16;

export type NodeState = 'alive' | 'suspect' | 'gone';

/** How far back a node's own heartbeat sequence may step and still be a reordering (then it is stale). */
const REORDER_WINDOW = 64;

export interface MembershipOptions {
  /** Missed heartbeat intervals (the node's own `intervalMs`) before a node is suspect. Default 3. */
  suspectAfterIntervals?: number;
  /** Missed intervals before a node is gone and `sweep` removes it. Default 5. */
  goneAfterIntervals?: number;
}

export interface CandidateOptions {
  /** Extra gate, e.g. `(id) => circuit.available(id, now)`. Use a check that does not claim the half-open probe. */
  allow?: (nodeId: string) => boolean;
  /** With a per-node memory budget, rss / budget counts towards `resourceUsage`. */
  memoryLimitBytes?: number;
}

/** What `observe` did with a heartbeat. */
export interface ObserveResult {
  /** `stale`: older than what we have (reordered, or from a previous incarnation) and ignored. */
  kind: 'joined' | 'updated' | 'restarted' | 'stale';
  /** Node ids dropped because this heartbeat comes from the same host+pid after they fell silent: their leases are gone. */
  replaced: string[];
}

export interface NodeView {
  nodeId: string;
  state: NodeState;
  /** alive, not draining, not marked unhealthy (circuit state is not known here). */
  eligible: boolean;
  draining: boolean;
  unhealthy: boolean;
  host: string;
  pid: number;
  startedAt: number;
  seq: number;
  /** Our clock when its last heartbeat arrived. */
  lastSeenAt: number;
  silentMs: number;
  inFlight: number;
  /** Operator override, if any. */
  weight: number | undefined;
  pools: string[];
  heartbeat: Readonly<Heartbeat>;
}

interface NodeRecord {
  hb: Heartbeat;
  lastSeenAt: number;
  /** Our placements sent and not answered yet. */
  inFlight: number;
  /** Leases granted through us since the node's last heartbeat, which does not show them yet. */
  unseen: number;
  /** Found suspect by a sweep and not heard since: out of the candidate index. */
  suspect: boolean;
}

/**
 * The balancer's view of the pool nodes, built from heartbeats only. Pure:
 * `now` is the caller's clock at the moment of the call, and silence is
 * measured on that clock (never the node's timestamps), so clock skew between
 * machines cannot make a node look dead or alive.
 */
export class Membership {
  readonly suspectAfterIntervals: number;
  readonly goneAfterIntervals: number;
  private readonly nodesById = new Map<string, NodeRecord>();
  // Kept apart from node records: an operator weight may be loaded before the node's first heartbeat.
  private readonly weights = new Map<string, number>();
  private readonly unhealthy = new Set<string>();
  private readonly unhealthyPools = new Map<string, Set<string>>();
  /** Per pool, the placeable nodes by tier (see candidate-index.ts). */
  private readonly index = new Map<string, PoolIndex>();
  /** Per pool, how many known nodes serve it (whatever their state). */
  private readonly poolMembers = new Map<string, number>();
  /** host + pid -> node ids, so a join finds a restarted process without scanning every node. */
  private readonly byProcess = new Map<string, Set<string>>();
  /** Set while the observer itself is cut off (see freeze). */
  private frozenAt: number | undefined;

  constructor(opts: MembershipOptions = {}) {
    this.suspectAfterIntervals = opts.suspectAfterIntervals ?? 3;
    this.goneAfterIntervals = opts.goneAfterIntervals ?? 5;
    if (!(this.suspectAfterIntervals > 0) || !(this.goneAfterIntervals >= this.suspectAfterIntervals)) {
      throw new RangeError('membership needs 0 < suspectAfterIntervals <= goneAfterIntervals');
    }
  }

  observe(hb: Heartbeat, now: number): ObserveResult {
    const known = this.nodesById.get(hb.nodeId);
    if (known !== undefined) {
      const prev = known.hb;
      const newInstance = hb.instanceId !== undefined && prev.instanceId !== undefined
        ? hb.instanceId !== prev.instanceId
        : hb.startedAt !== prev.startedAt;
      if (!newInstance) {
        // One process: only its sequence orders its heartbeats. A jump back by
        // more than a reordering could explain means the previous one was
        // bogus (a forged seq), so the real heartbeats are not ignored for ever.
        if (hb.seq <= prev.seq && prev.seq - hb.seq <= REORDER_WINDOW) return { kind: 'stale', replaced: [] };
      } else if (hb.instanceId === undefined && hb.startedAt < prev.startedAt) {
        // Without instance ids (older nodes), the older start is the previous incarnation.
        return { kind: 'stale', replaced: [] };
      }
      this.countPools(prev, -1);
      this.countPools(hb, +1);
      known.hb = hb;
      known.lastSeenAt = now;
      known.suspect = false;
      // The node sent this heartbeat after the replies we already have (one
      // connection, in order), so its numbers include those grants now.
      known.unseen = 0;
      // Another process under the same id that started later is a restart:
      // placements sent to the old process will never be answered by it, so
      // stop counting them. Another instance that started earlier is taken
      // too (a real node's heartbeat always wins back its record after a
      // forged one) but is not a restart. inFlight is otherwise left alone:
      // the heartbeat may not reflect them yet, and the replies settle them.
      const restarted = newInstance && hb.startedAt >= prev.startedAt;
      if (restarted) known.inFlight = 0;
      this.reindex(hb.nodeId, known, prev);
      return { kind: restarted ? 'restarted' : 'updated', replaced: [] };
    }

    // A new id from the host+pid of a known node may be that process
    // restarted under a new identity: the old entry would otherwise linger as
    // a ghost until it went silent long enough to be swept. But host+pid is
    // not unique (containers run their process as PID 1, and with host
    // networking they share the host name), so it is a replacement only when
    // the old entry has missed at least one of its heartbeats and did not
    // start later than the new one (same host, same clock). A live node's
    // heartbeat is never ignored because of another id's record.
    const replaced: string[] = [];
    const proc = processKey(hb);
    for (const id of this.byProcess.get(proc) ?? []) {
      const rec = this.nodesById.get(id)!;
      if (now - rec.lastSeenAt >= rec.hb.intervalMs && hb.startedAt >= rec.hb.startedAt) replaced.push(id);
    }
    for (const id of replaced) this.remove(id);
    const rec: NodeRecord = { hb, lastSeenAt: now, inFlight: 0, unseen: 0, suspect: false };
    this.nodesById.set(hb.nodeId, rec);
    let same = this.byProcess.get(proc);
    if (!same) this.byProcess.set(proc, (same = new Set()));
    same.add(hb.nodeId);
    this.countPools(hb, +1);
    this.reindex(hb.nodeId, rec, undefined);
    return { kind: 'joined', replaced };
  }

  /**
   * The observer lost its own connection: silence from now on is its own, not
   * the nodes', so time stops counting for them until `thaw`.
   */
  freeze(now: number): void {
    this.frozenAt ??= now;
  }

  /** Connected again: the outage does not count as silence. */
  thaw(now: number): void {
    if (this.frozenAt === undefined) return;
    const outage = Math.max(0, now - this.frozenAt);
    this.frozenAt = undefined;
    for (const rec of this.nodesById.values()) rec.lastSeenAt += outage;
  }

  /** Is this node id known (for the heartbeat guard's cap on nodes)? */
  has(nodeId: string): boolean {
    return this.nodesById.has(nodeId);
  }

  get size(): number {
    return this.nodesById.size;
  }

  state(nodeId: string, now: number): NodeState | undefined {
    const rec = this.nodesById.get(nodeId);
    return rec && this.stateOf(rec, now);
  }

  /** Nodes eligible for `pool` right now, as strategies see them. */
  candidates(pool: string, now: number, opts: CandidateOptions = {}): Candidate[] {
    const out: Candidate[] = [];
    for (const [id, rec] of this.nodesById) {
      const stats = rec.hb.pools[pool];
      if (stats === undefined || !this.eligible(id, rec, now)) continue;
      if (opts.allow && !opts.allow(id)) continue;
      out.push(this.toCandidate(id, rec, stats, opts));
    }
    return out;
  }

  /**
   * At most `limit` eligible candidates for `pool`, from the best tier that
   * has any (spare idle, else room to create, else full nodes where the
   * request would queue), in a window that rotates over the tier. Costs
   * O(limit) whatever the number of nodes, unless most of the tier is
   * refused by `allow` or has fallen silent since the last sweep.
   */
  sample(pool: string, now: number, opts: CandidateOptions = {}, limit = SAMPLE_SIZE): Candidate[] {
    const idx = this.index.get(pool);
    if (idx === undefined) return [];
    for (const t of TIERS) {
      const out: Candidate[] = [];
      idx.tiers[t].scan((id) => {
        const rec = this.nodesById.get(id)!;
        if (this.stateOf(rec, now) !== 'alive' || (opts.allow && !opts.allow(id))) return true;
        out.push(this.toCandidate(id, rec, rec.hb.pools[pool]!, opts));
        return out.length < limit;
      });
      if (out.length > 0) return out;
    }
    return [];
  }

  /** The index's view of a pool: node id -> tier, for tests and status. */
  tiers(pool: string): Map<string, Tier> {
    const out = new Map<string, Tier>();
    const idx = this.index.get(pool);
    if (idx) for (const t of TIERS) for (const id of idx.tiers[t].values()) out.set(id, t);
    return out;
  }

  /** Does any known node serve the pool? O(1). */
  hasPool(pool: string): boolean {
    return (this.poolMembers.get(pool) ?? 0) > 0;
  }

  /** Every known node, for status displays; gone nodes stay listed until swept. */
  nodes(now: number): NodeView[] {
    return [...this.nodesById].map(([id, rec]) => this.view(id, rec, now));
  }

  /** One node's view, or undefined if unknown. */
  node(nodeId: string, now: number): NodeView | undefined {
    const rec = this.nodesById.get(nodeId);
    return rec && this.view(nodeId, rec, now);
  }

  private view(id: string, rec: NodeRecord, now: number): NodeView {
    return {
      nodeId: id,
      state: this.stateOf(rec, now),
      eligible: this.eligible(id, rec, now),
      draining: rec.hb.draining,
      unhealthy: this.unhealthy.has(id),
      host: rec.hb.host,
      pid: rec.hb.pid,
      startedAt: rec.hb.startedAt,
      seq: rec.hb.seq,
      lastSeenAt: rec.lastSeenAt,
      silentMs: Math.max(0, now - rec.lastSeenAt),
      inFlight: rec.inFlight + rec.unseen,
      weight: this.weights.get(id),
      pools: Object.keys(rec.hb.pools),
      heartbeat: rec.hb,
    };
  }

  /**
   * Removes gone nodes and returns their ids (their leases should be
   * announced lost); takes silent nodes out of the candidate index until
   * they are heard again.
   */
  sweep(now: number): string[] {
    const gone: string[] = [];
    for (const [id, rec] of this.nodesById) {
      const st = this.stateOf(rec, now);
      if (st === 'gone') gone.push(id);
      else if (st === 'suspect' && !rec.suspect) {
        rec.suspect = true;
        this.reindex(id, rec, rec.hb);
      }
    }
    for (const id of gone) this.remove(id);
    return gone;
  }

  /** A placement was sent to the node. */
  placed(nodeId: string): void {
    const rec = this.nodesById.get(nodeId);
    if (!rec) return;
    rec.inFlight++;
    this.reindex(nodeId, rec, rec.hb);
  }

  /** Its reply (or timeout) arrived. */
  settled(nodeId: string): void {
    const rec = this.nodesById.get(nodeId);
    if (rec && rec.inFlight > 0) {
      rec.inFlight--;
      this.reindex(nodeId, rec, rec.hb);
    }
  }

  /**
   * Its reply arrived with a lease: the work stays counted in the node's
   * load until a heartbeat shows it, but no longer as a request in flight.
   * Tiers (idle, room, full) only subtract requests in flight: a lease
   * granted since the last heartbeat may well be released already (releases
   * go straight to the node), and counting every grant of the last second
   * against the idle ones would make a busy node look full.
   */
  granted(nodeId: string): void {
    const rec = this.nodesById.get(nodeId);
    if (rec && rec.inFlight > 0) {
      rec.inFlight--;
      rec.unseen++;
      this.reindex(nodeId, rec, rec.hb);
    }
  }

  /** Operator weight for every pool of the node; `undefined` returns to the heartbeat's pool weight. */
  setWeight(nodeId: string, weight: number | undefined): void {
    if (weight === undefined) this.weights.delete(nodeId);
    else if (Number.isFinite(weight) && weight >= 0) this.weights.set(nodeId, weight);
    else throw new RangeError(`weight must be a finite number >= 0, got ${String(weight)}`);
    const rec = this.nodesById.get(nodeId);
    if (rec) this.reindex(nodeId, rec, rec.hb);
  }

  /** Verdict from the health checker. */
  markUnhealthy(nodeId: string, unhealthy: boolean): void {
    if (unhealthy) this.unhealthy.add(nodeId);
    else this.unhealthy.delete(nodeId);
    const rec = this.nodesById.get(nodeId);
    if (rec) this.reindex(nodeId, rec, rec.hb);
  }

  /** Pools of the node whose backend the health checker says is down (replaces the previous set). */
  markPoolsUnhealthy(nodeId: string, pools: readonly string[]): void {
    if (pools.length > 0) this.unhealthyPools.set(nodeId, new Set(pools));
    else this.unhealthyPools.delete(nodeId);
    // Those pools drop to the last tier on that node: used only when no other node can take the request.
    const rec = this.nodesById.get(nodeId);
    if (rec) this.reindex(nodeId, rec, rec.hb);
  }

  /** Is the node's pool marked unhealthy (its backend down)? */
  poolUnhealthy(nodeId: string, pool: string): boolean {
    return this.unhealthyPools.get(nodeId)?.has(pool) ?? false;
  }

  private remove(nodeId: string): void {
    const rec = this.nodesById.get(nodeId);
    if (rec === undefined) return;
    for (const pool of Object.keys(rec.hb.pools)) this.index.get(pool)?.set(nodeId, undefined);
    this.countPools(rec.hb, -1);
    const proc = processKey(rec.hb);
    const same = this.byProcess.get(proc);
    same?.delete(nodeId);
    if (same?.size === 0) this.byProcess.delete(proc);
    this.nodesById.delete(nodeId);
    // A health verdict was about that process; if the id ever comes back, the
    // checker judges it afresh. Operator weights are config and stay.
    this.unhealthy.delete(nodeId);
    this.unhealthyPools.delete(nodeId);
  }

  /**
   * Put the node where it belongs in the index of each pool it serves, and
   * out of pools its previous heartbeat (`prev`) served and this one does
   * not. O(pools of the node).
   */
  private reindex(id: string, rec: NodeRecord, prev: Heartbeat | undefined): void {
    const listed = !rec.suspect && !rec.hb.draining && !this.unhealthy.has(id);
    if (prev !== undefined && prev !== rec.hb) {
      for (const pool of Object.keys(prev.pools)) if (!Object.hasOwn(rec.hb.pools, pool)) this.index.get(pool)?.set(id, undefined);
    }
    for (const [pool, s] of Object.entries(rec.hb.pools)) {
      let idx = this.index.get(pool);
      if (!idx) this.index.set(pool, (idx = new PoolIndex()));
      const weight = this.weights.get(id) ?? (Number.isFinite(s.weight) ? Math.max(0, s.weight) : 1);
      idx.set(id, listed && weight > 0 ? tierOf({
        idle: count(s.idle), total: count(s.total), creating: count(s.creating), waiting: count(s.waiting), max: count(s.max), inFlight: rec.inFlight,
        // A backend a health verdict says is down counts as the pool's own `available: false`.
        available: s.available !== false && !this.unhealthyPools.get(id)?.has(pool),
      }) : undefined);
    }
  }

  private countPools(hb: Heartbeat, delta: 1 | -1): void {
    for (const pool of Object.keys(hb.pools)) {
      const n = (this.poolMembers.get(pool) ?? 0) + delta;
      if (n > 0) this.poolMembers.set(pool, n);
      else this.poolMembers.delete(pool);
    }
  }

  private stateOf(rec: NodeRecord, now: number): NodeState {
    const missed = ((this.frozenAt ?? now) - rec.lastSeenAt) / rec.hb.intervalMs;
    if (missed >= this.goneAfterIntervals) return 'gone';
    if (missed >= this.suspectAfterIntervals) return 'suspect';
    return 'alive';
  }

  private eligible(id: string, rec: NodeRecord, now: number): boolean {
    return this.stateOf(rec, now) === 'alive' && !rec.hb.draining && !this.unhealthy.has(id);
  }

  private toCandidate(id: string, rec: NodeRecord, s: PoolStats, opts: CandidateOptions): Candidate {
    const hb = rec.hb;
    // Pool stats inside a heartbeat are not validated field by field, so a
    // missing number must not turn into NaN and poison every comparison.
    const cpu = count(hb.cpu);
    const mem = opts.memoryLimitBytes && opts.memoryLimitBytes > 0 ? count(hb.memory.rss) / opts.memoryLimitBytes : 0;
    const requests = hb.maxConcurrent > 0 ? count(hb.inFlight) / hb.maxConcurrent : 0;
    return {
      nodeId: id,
      weight: this.weights.get(id) ?? (Number.isFinite(s.weight) ? Math.max(0, s.weight) : 1),
      idle: count(s.idle),
      total: count(s.total),
      max: count(s.max),
      active: count(s.active),
      waiting: count(s.waiting),
      creating: count(s.creating),
      inFlight: rec.inFlight + rec.unseen,
      latencyMs: count(s.latencyMs),
      requestRate: count(s.requestRate),
      errorRate: Math.min(1, count(s.errorRate)),
      resourceUsage: Math.min(1, Math.max(cpu, mem, requests)),
    };
  }
}

function processKey(hb: Heartbeat): string {
  return `${hb.host}\u0000${hb.pid}`;
}

function count(x: number | undefined): number {
  return typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : 0;
}
