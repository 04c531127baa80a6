import type { HealthCheckSpec } from '@shoal/config';
import { PROTOCOL_VERSION, type HealthCheckResult, type HealthVerdict, type ProbeReply } from '@shoal/protocol';

/**
 * Health verdicts as pure functions: one probe round's observations become
 * check results (`judge`), results fold into a node's state (`step`) with
 * `failure_threshold` / `recovery_threshold` counted per check, and a state
 * reads as a verdict (`toVerdict`). No clock, no network: `now` is passed in.
 */

export interface Thresholds {
  /** Consecutive failed rounds of one check before it counts as failing. */
  failureThreshold: number;
  /** Consecutive good rounds of a failing check before it counts as passing again. */
  recoveryThreshold: number;
}

/** What one round saw. `undefined` for a probe that was not sent (no such check configured). */
export interface Observation {
  /** The ping's round trip, or why it failed (no answer within the timeout, no responders). */
  ping?: { ok: true; ms: number } | { ok: false; error: string };
  /** The probe's round trip and the node's reply, or why it failed. */
  probe?: { ok: true; ms: number; reply: ProbeReply } | { ok: false; error: string };
}

/** Results of one round: the node's checks by type, and each pool's backend check. Absent = not known this round. */
export interface RoundResults {
  checks: HealthCheckResult[];
  pools: Record<string, HealthCheckResult>;
}

/** One check's counters. */
export interface CheckState {
  failing: boolean;
  /** Consecutive failed rounds (while passing) or good rounds (while failing). */
  streak: number;
  last: HealthCheckResult;
}

export interface NodeHealthState {
  healthy: boolean;
  /** When `healthy` last changed (or the node was first seen). */
  since: number;
  checks: Record<string, CheckState>;
  pools: Record<string, CheckState>;
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const mb = (b: number) => `${round1(b / 1048576)} MB`;

/** Turn one round's observations into check results, by the configured checks. */
export function judge(specs: readonly HealthCheckSpec[], obs: Observation, timeoutMs: number): RoundResults {
  const checks: HealthCheckResult[] = [];
  const probe = obs.probe;
  for (const spec of specs) {
    if (spec.type === 'ping') {
      const p = obs.ping;
      if (!p) continue;
      checks.push(p.ok
        ? { type: 'ping', ok: true, value: round1(p.ms), limit: timeoutMs }
        : { type: 'ping', ok: false, limit: timeoutMs, message: p.error });
    } else if (spec.type === 'response_time') {
      if (!probe) continue;
      const limit = spec.maxLatencyMs;
      if (!probe.ok) {
        checks.push({ type: 'response_time', ok: false, limit, message: probe.error });
        continue;
      }
      const slow = Object.entries(probe.reply.pools).filter(([, p]) => p.ms !== undefined).map(([n, p]) => `${n} ${round1(p.ms!)} ms`).join(', ');
      const ok = probe.ms <= limit;
      checks.push({ type: 'response_time', ok, value: round1(probe.ms), limit, ...(ok ? {} : { message: `probe round trip ${round1(probe.ms)} ms > ${limit} ms${slow ? ` (validate: ${slow})` : ''}` }) });
    } else {
      // Memory needs the probe's reply; without it the check is not known this round (the ping and response_time say why).
      if (!probe?.ok) continue;
      // The node's footprint: its own rss and its resources' (a CLI process per Claude session), as a cgroup would count them.
      const { rssBytes, memoryLimitBytes } = probe.reply;
      const resources = probe.reply.resourcesBytes ?? 0;
      if (!(memoryLimitBytes > 0)) continue;
      const pct = ((rssBytes + resources) / memoryLimitBytes) * 100;
      const limit = spec.maxUsagePercent;
      const ok = pct <= limit;
      const used = resources > 0 ? `rss ${mb(rssBytes)} + resources ${mb(resources)}` : `rss ${mb(rssBytes)}`;
      checks.push({ type: 'memory_usage', ok, value: round1(pct), limit, ...(ok ? {} : { message: `${used} is ${round1(pct)}% of the node's ${mb(memoryLimitBytes)} limit > ${limit}%` }) });
    }
  }
  const pools: Record<string, HealthCheckResult> = {};
  if (probe?.ok) {
    for (const [name, p] of Object.entries(probe.reply.pools)) {
      const invalid = p.valid === false;
      const ok = p.healthy && !invalid;
      const why = !p.healthy ? p.reason ?? 'backend unavailable' : invalid ? 'an idle resource failed validation' : undefined;
      pools[name] = { type: 'backend', ok, ...(why ? { message: why } : {}) };
    }
  }
  return { checks, pools };
}

export function initialState(now: number): NodeHealthState {
  return { healthy: true, since: now, checks: {}, pools: {} };
}

/** Fold one round into a check's counters. */
export function stepCheck(prev: CheckState | undefined, r: HealthCheckResult, th: Thresholds): CheckState {
  const s = prev ?? { failing: false, streak: 0, last: r };
  if (!s.failing) {
    const streak = r.ok ? 0 : s.streak + 1;
    return streak >= th.failureThreshold ? { failing: true, streak: 0, last: r } : { failing: false, streak, last: r };
  }
  const streak = r.ok ? s.streak + 1 : 0;
  return streak >= th.recoveryThreshold ? { failing: false, streak: 0, last: r } : { failing: true, streak, last: r };
}

/**
 * The node's new state after a round. A check not seen this round keeps its
 * counters (unknown is neither good nor bad); a pool no longer reported is
 * dropped. The node is unhealthy while any of its checks is failing; a pool's
 * backend failing marks only that pool.
 */
export function step(prev: NodeHealthState, round: RoundResults, th: Thresholds, now: number): NodeHealthState {
  const checks = { ...prev.checks };
  for (const r of round.checks) checks[r.type] = stepCheck(prev.checks[r.type], r, th);
  const pools: Record<string, CheckState> = {};
  const seenPools = Object.keys(round.pools).length > 0;
  for (const [name, r] of Object.entries(round.pools)) pools[name] = stepCheck(prev.pools[name], r, th);
  // No probe reply this round: pools keep their state.
  const poolStates = seenPools ? pools : prev.pools;
  const healthy = !Object.values(checks).some((c) => c.failing);
  return { healthy, since: healthy === prev.healthy ? prev.since : now, checks, pools: poolStates };
}

/** Why the node is unhealthy: its failing checks with their numbers. */
export function reasonOf(s: NodeHealthState): string | undefined {
  const failing = Object.values(s.checks).filter((c) => c.failing).map((c) => `${c.last.type}: ${describe(c.last)}`);
  return failing.length > 0 ? failing.join('; ') : undefined;
}

function describe(r: HealthCheckResult): string {
  if (r.ok) return `recovering (last ${r.value ?? 'ok'})`;
  if (r.message) return r.message;
  return r.value !== undefined && r.limit !== undefined ? `${r.value} > ${r.limit}` : 'failed';
}

export function toVerdict(s: NodeHealthState, nodeId: string, checkerId: string, now: number): HealthVerdict {
  const reason = s.healthy ? undefined : reasonOf(s);
  const pools: HealthVerdict['pools'] = {};
  for (const [name, c] of Object.entries(s.pools)) pools[name] = c.failing ? { healthy: false, reason: c.last.message ?? 'backend unavailable' } : { healthy: true };
  return {
    v: PROTOCOL_VERSION, nodeId, healthy: s.healthy, at: now, since: s.since, checkerId,
    ...(reason ? { reason } : {}),
    checks: Object.values(s.checks).map((c) => c.last),
    pools,
  };
}

/** Does the published verdict say something other than this state (node or any pool)? */
export function differs(s: NodeHealthState, published: HealthVerdict | undefined): boolean {
  // The first verdict is always written: status shows every probed node's verdict.
  if (!published) return true;
  if (published.healthy !== s.healthy) return true;
  const names = new Set([...Object.keys(s.pools), ...Object.keys(published.pools)]);
  for (const n of names) if ((s.pools[n]?.failing ?? false) !== (published.pools[n]?.healthy === false)) return true;
  return false;
}

/**
 * Replicas: should this checker write its verdict over the one stored? An
 * unhealthy verdict always is (it also refreshes `at` every round, which
 * keeps it current). A healthy one replaces another checker's unhealthy
 * verdict only once that is stale (not refreshed for `staleMs`: its checker
 * is gone or has changed its mind). So a node is unhealthy while any live
 * checker says so, and one stored verdict per node says it.
 */
export function shouldWrite(mine: HealthVerdict, stored: HealthVerdict | undefined, now: number, staleMs: number): boolean {
  if (!mine.healthy) return true;
  if (!stored || stored.healthy || stored.checkerId === mine.checkerId) return true;
  return now - stored.at >= staleMs;
}

/** The probe period of a node: `health_check.interval` if set, else its shortest pool `load_balancing.health_check_interval`, else 30 s. */
export function probeInterval(configured: number | undefined, poolIntervals: readonly (number | undefined)[]): number {
  if (configured !== undefined && configured > 0) return configured;
  const xs = poolIntervals.filter((x): x is number => typeof x === 'number' && Number.isFinite(x) && x > 0);
  return xs.length > 0 ? Math.min(...xs) : 30_000;
}
