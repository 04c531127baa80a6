import type { PolicyMetric, PoolConfig, ScalingPolicy } from '@shoal/config';
import { forecastDemand, sustainedTrend } from './forecast.js';

/**
 * One pool as the leader sees it across its live capacity: the nodes that
 * heartbeat, are not draining and are not judged unhealthy.
 */
export interface PoolView {
  /** Live nodes that have the pool. */
  nodes: number;
  /** Sums over those nodes. */
  active: number;
  waiting: number;
  total: number;
  creating: number;
  /** The cluster-wide target in force (stored, else the sum of the nodes' targets). */
  target: number;
  /** Cluster bounds: the sums of the nodes' min_size and max_size. */
  min: number;
  max: number;
  /** Acquires per second, summed. */
  requestRate: number;
  /** Mean process CPU share (0..1 of one core) of the nodes. */
  cpu: number;
  /** Pool memory over its limit (sum of memory / sum of max_total_memory), 0..1. */
  memory: number;
  /** Mean measured create latency (ms) of the nodes; 0 when unknown. */
  createLatencyMs: number;
}

/**
 * A pool's scaling settings as decide() reads them: the config's
 * `auto_scaling` block (`scaleDownToFit` optional here: off unless said),
 * its `scaling_policies`, and the decision tick (the prediction looks one
 * create latency plus one tick ahead).
 */
export type ScalingConfig = Omit<PoolConfig['autoScaling'], 'scaleDownToFit'> & {
  scaleDownToFit?: boolean;
  policies: readonly ScalingPolicy[];
  tickMs: number;
};

/** The scaling settings of a pool as this autoscaler's config describes it; a pool it does not describe is left to the operator (disabled). */
export function scalingConfigOf(pc: PoolConfig | undefined, tickMs: number): ScalingConfig {
  const a = pc?.autoScaling;
  if (!a) {
    return { enabled: false, scaleUpThreshold: 0.8, scaleDownThreshold: 0.3, scaleUpIncrement: 5, scaleDownIncrement: 2, cooldownMs: 30_000, stabilizationWindowMs: 60_000, predictive: false, scaleDownToFit: false, policies: [], tickMs };
  }
  return { ...a, policies: pc?.scalingPolicies ?? [], tickMs };
}

/** What one tick saw, kept as history. */
export interface Sample {
  at: number;
  /** (active + waiting) / (total + creating); see `utilization`. */
  utilization: number;
  /** active + waiting: resources wanted right now. */
  demand: number;
  /**
   * What the prediction extrapolates: active + the waiting acquires no create
   * in flight covers. Waiters pile up while creates run (the pool creates for
   * each); counting them would read a step as a steep ramp.
   */
  uncovered: number;
  metrics: Record<PolicyMetric, number>;
}

export interface History {
  /** Earlier samples, oldest first (the current one is made by `decide`). */
  samples: readonly Sample[];
  /** When the last scaling action (either direction) was taken, if any. */
  lastActionAt?: number;
}

export type Direction = 'up' | 'down' | 'none';

export interface Decision {
  direction: Direction;
  /** The new cluster target (the current one when nothing changes). */
  target: number;
  /** What the rule asked for before the bounds. */
  wanted: number;
  /** utilization, policy:<name>, predictive, or why nothing happened: disabled, no_nodes, steady, cooldown, stabilizing, at_max, at_min. */
  reason: string;
  /** The numbers that caused it, for the decision log line. */
  numbers: Record<string, number>;
}

/**
 * Utilization of a pool: resources wanted (leased + acquires waiting) over the
 * resources it has or is making. Waiting acquires count, so a pool whose
 * every resource is busy and has a queue reads above 1; an empty pool with
 * waiters reads as their number.
 */
export function utilization(v: Pick<PoolView, 'active' | 'waiting' | 'total' | 'creating'>): number {
  return (v.active + v.waiting) / Math.max(1, v.total + v.creating);
}

export function sampleOf(v: PoolView, at: number): Sample {
  return {
    at,
    utilization: utilization(v),
    demand: v.active + v.waiting,
    uncovered: v.active + Math.max(0, v.waiting - v.creating),
    metrics: { cpu_usage: v.cpu, memory_usage: v.memory, request_rate: v.requestRate, queue_length: v.waiting },
  };
}

/** The prediction reads the demand of the last max(this, 2 × lead): enough points for a trend, short enough to catch a ramp early. */
export const FORECAST_WINDOW_MIN_MS = 4_000;

interface Vote { dir: 'up' | 'down'; n: number; reason: string }

/** Rules that fire on one sample alone (durations ignored): used for the stabilization window. */
function instantVotes(s: Sample, cfg: ScalingConfig): Vote[] {
  const votes: Vote[] = [];
  if (s.utilization >= cfg.scaleUpThreshold) votes.push({ dir: 'up', n: cfg.scaleUpIncrement, reason: 'utilization' });
  else if (s.utilization <= cfg.scaleDownThreshold) votes.push({ dir: 'down', n: cfg.scaleDownIncrement, reason: 'utilization' });
  for (const p of cfg.policies) {
    const v = s.metrics[p.metric];
    if (p.up && v >= p.up.threshold) votes.push({ dir: 'up', n: p.up.increment, reason: `policy:${p.name}` });
    else if (p.down && v <= p.down.threshold) votes.push({ dir: 'down', n: p.down.decrement, reason: `policy:${p.name}` });
  }
  return votes;
}

/**
 * The samples that stand for the last `ms`: those inside it and the newest
 * one at or before its start (it stood for the state at that moment).
 */
function windowOf(samples: readonly Sample[], now: number, ms: number): readonly Sample[] {
  let from = 0;
  for (let i = 0; i < samples.length; i++) if (samples[i]!.at <= now - ms) from = i;
  return samples.slice(from);
}

/**
 * The smallest target at which `demand` reads at the middle of the band
 * between the thresholds: as far from asking for a scale-up as from asking
 * for another scale-down, so a step that lands there is not undone. (A
 * scale-down never removes less than scale_down_increment: when that is
 * more than target − fit, the step lands below the fit, as without
 * scaleDownToFit.)
 */
export function fitTarget(demand: number, cfg: Pick<ScalingConfig, 'scaleUpThreshold' | 'scaleDownThreshold'>): number {
  const mid = (cfg.scaleUpThreshold + cfg.scaleDownThreshold) / 2;
  return Math.ceil(demand / mid - 1e-9);
}

/**
 * True when `pred` held for every sample of the last `ms` and the history
 * reaches back that far (a leader that just started has not seen it hold).
 */
function heldFor(samples: readonly Sample[], now: number, ms: number, pred: (s: Sample) => boolean): boolean {
  if (ms <= 0) return pred(samples[samples.length - 1]!);
  if (samples.length === 0 || samples[0]!.at > now - ms) return false;
  return windowOf(samples, now, ms).every(pred);
}

/**
 * Why prediction stays quiet this tick, if it does. It extrapolates only a demand (active + waiting)
 * that itself rose in both halves of the forecast window (`sustainedTrend`), and never while
 * acquires wait and the pool holds all it may (the cluster max: a prediction could only keep the
 * surplus). A pool catching up on a queue (a step: the queue piles up while the creates it started
 * run, then drains as they land) shows leased resources rising as the creates land, before and after
 * the queue is gone; extrapolated, that sent the target far past the need, where the band then kept
 * it. Its demand does not rise in both halves: it jumps, then stays or falls. A ramp that outruns
 * the target does, although the pool (which creates for each waiter) has acquires waiting on
 * creates on almost every tick; a hold on "waiting while creating" silenced prediction exactly then.
 */
function predictionHeld(view: PoolView, samples: readonly Sample[], now: number, windowMs: number): 'at_max' | 'no_demand_trend' | undefined {
  if (view.waiting > 0 && view.total + view.creating >= view.max) return 'at_max';
  const demand = samples.filter((s) => s.at >= now - windowMs && s.at <= now).map((s) => ({ at: s.at, v: s.demand }));
  return sustainedTrend(demand) === undefined ? 'no_demand_trend' : undefined;
}

/**
 * One scaling decision of one pool: (view, config, history, now) → action.
 * Up wins over down (any rule asking for more gets the largest increment
 * asked); down needs every firing rule to agree, takes the smallest
 * decrement, and only after every tick of the stabilization window asked for
 * a scale-down (with `scaleDownToFit`, the utilization rule's decrement is
 * what brings the target to `fitTarget` of the window's peak demand, if that
 * is more than scaleDownIncrement). Thresholds are a band (down < up,
 * checked by the config), so a pool between them holds. The cooldown spaces
 * actions of either direction; the target stays within the cluster's
 * min..max.
 */
export function decide(view: PoolView, cfg: ScalingConfig, history: History, now: number): Decision {
  const cur = sampleOf(view, now);
  const numbers: Record<string, number> = {
    utilization: round(cur.utilization), demand: cur.demand, waiting: view.waiting, total: view.total, creating: view.creating, target: view.target,
    min: view.min, max: view.max, nodes: view.nodes,
  };
  const none = (reason: string, wanted = view.target): Decision => ({ direction: 'none', target: view.target, wanted, reason, numbers });
  if (!cfg.enabled) return none('disabled');
  if (view.nodes === 0) return none('no_nodes');
  const samples = [...history.samples.filter((s) => s.at < now), cur];

  const votes: Vote[] = [];
  if (cur.utilization >= cfg.scaleUpThreshold) votes.push({ dir: 'up', n: cfg.scaleUpIncrement, reason: 'utilization' });
  else if (cur.utilization <= cfg.scaleDownThreshold) {
    let n = cfg.scaleDownIncrement;
    if (cfg.scaleDownToFit) {
      // Sized on the highest demand the stabilization window saw (as HPA keeps the highest recommendation of its window).
      const peak = Math.max(...windowOf(samples, now, cfg.stabilizationWindowMs).map((s) => s.demand));
      const fit = fitTarget(peak, cfg);
      numbers.fit = fit;
      n = Math.max(n, view.target - fit);
    }
    votes.push({ dir: 'down', n, reason: 'utilization' });
  }
  for (const p of cfg.policies) {
    const value = (s: Sample) => s.metrics[p.metric];
    numbers[p.metric] = round(value(cur));
    if (p.up && heldFor(samples, now, p.durationMs, (s) => value(s) >= p.up!.threshold)) votes.push({ dir: 'up', n: p.up.increment, reason: `policy:${p.name}` });
    else if (p.down && heldFor(samples, now, p.durationMs, (s) => value(s) <= p.down!.threshold)) votes.push({ dir: 'down', n: p.down.decrement, reason: `policy:${p.name}` });
  }
  // Prediction gets ahead of a demand that rises (see predictionHeld).
  if (cfg.predictive) {
    const lead = view.createLatencyMs + cfg.tickMs;
    const windowMs = Math.max(FORECAST_WINDOW_MIN_MS, 2 * lead);
    const held = predictionHeld(view, samples, now, windowMs);
    // catchingUp: waiters that the pool's creates or the utilization rule serve, not a trend to extrapolate.
    if (held && view.waiting > 0) numbers.catchingUp = 1;
    if (!held) {
      numbers.uncovered = cur.uncovered;
      const f = forecastDemand(samples.map((s) => ({ at: s.at, v: s.uncovered })), now, lead, windowMs);
      if (f !== undefined) {
        numbers.forecast = round(f);
        numbers.leadMs = Math.round(lead);
        // A resource for each acquire forecast one lead ahead: the growth the forecast sees is what
        // prediction adds. The threshold's headroom is the reactive rule's buffer for growth it cannot
        // see; sizing the forecast at the threshold as well counted that growth twice (on a ramp the
        // headroom covers, prediction then kept ~25 % more than reactive for no warmer acquire).
        const want = Math.ceil(f - 1e-9);
        if (want > view.target) votes.push({ dir: 'up', n: want - view.target, reason: 'predictive' });
      }
    }
  }

  const ups = votes.filter((v) => v.dir === 'up');
  const downs = votes.filter((v) => v.dir === 'down');
  let wanted: number;
  let reason: string;
  if (ups.length > 0) {
    const best = ups.reduce((a, b) => (b.n > a.n ? b : a));
    wanted = view.target + best.n;
    reason = best.reason;
  } else if (downs.length > 0) {
    const least = downs.reduce((a, b) => (b.n < a.n ? b : a));
    wanted = view.target - least.n;
    reason = least.reason;
    const downOnly = (s: Sample) => { const v = instantVotes(s, cfg); return v.some((x) => x.dir === 'down') && !v.some((x) => x.dir === 'up'); };
    if (!heldFor(samples, now, cfg.stabilizationWindowMs, downOnly)) return none('stabilizing', wanted);
  } else {
    return none('steady');
  }
  if (history.lastActionAt !== undefined && now - history.lastActionAt < cfg.cooldownMs) return none('cooldown', wanted);
  const target = Math.min(view.max, Math.max(view.min, wanted));
  numbers.wanted = wanted;
  if (target === view.target) return none(wanted > view.target ? 'at_max' : 'at_min', wanted);
  return { direction: target > view.target ? 'up' : 'down', target, wanted, reason, numbers };
}

const round = (n: number) => Math.round(n * 1000) / 1000;
