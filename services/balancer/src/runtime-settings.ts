import type { SettingRow } from '@shoal/protocol';
import type { StrategyRequest } from '@shoal/protocol';
import type { SettingMeta } from './settings.js';
import type { PerformanceWeights, StrategyName } from './strategies/index.js';

/** What the balancer's config says about one pool. */
export interface PoolPolicy {
  strategy?: StrategyName;
  /** Where `strategy` came from (`file …`, `env AICLI_SESSION_POOL_LOAD_BALANCING`, …); `default` = no layer set it. */
  strategySource?: string;
  acquireTimeoutMs?: number;
  acquireTimeoutSource?: string;
}

export interface PolicyConfig {
  /** `balancer.strategy`: for a pool whose config sets no strategy (or that this balancer's config does not have). */
  strategy: StrategyName;
  strategySource?: string;
  performanceWeights: PerformanceWeights;
  pools?: Record<string, PoolPolicy>;
}

export type { SettingRow } from '@shoal/protocol';

/** Used when neither the client nor this balancer's config gives a pool's acquire deadline: the schema's default. */
export const DEFAULT_ACQUIRE_TIMEOUT_MS = 30_000;

/**
 * The balancer's settings, merged from the config and the operator's runtime
 * overrides: which strategy a pool is placed with, its acquire deadline, and
 * where each value came from. Pure state, no I/O.
 *
 * Strategy precedence, highest first: the runtime override (`shoal strategy`,
 * KV key `strategy`), the pool's own config (`pools.<name>.load_balancing`,
 * `session_pool.load_balancing`, AICLI_SESSION_POOL_LOAD_BALANCING,
 * SHOAL_POOL_<NAME>_LOAD_BALANCING_STRATEGY), then `balancer.strategy`.
 */
export class RuntimeSettings {
  private override: { value: StrategyRequest; meta: SettingMeta; revision: number } | undefined;
  private readonly weights = new Map<string, { weight: number; meta: SettingMeta; revision: number }>();

  constructor(private readonly cfg: PolicyConfig) {}

  /** Set (or clear with undefined) the runtime strategy override. Returns whether anything changed. */
  setOverride(value: StrategyRequest | undefined, revision: number, meta: SettingMeta = {}): boolean {
    const before = JSON.stringify(this.override?.value);
    this.override = value ? { value: { strategy: value.strategy, ...(value.performanceWeights ? { performanceWeights: value.performanceWeights } : {}) }, meta, revision } : undefined;
    return JSON.stringify(this.override?.value) !== before;
  }

  setWeight(nodeId: string, weight: number | undefined, revision: number, meta: SettingMeta = {}): void {
    if (weight === undefined) this.weights.delete(nodeId);
    else this.weights.set(nodeId, { weight, meta, revision });
  }

  get overridden(): boolean {
    return this.override !== undefined;
  }

  /** The strategy for `pool` and where it came from. */
  strategyOf(pool: string): SettingRow & { value: StrategyName; performanceWeights: PerformanceWeights } {
    const o = this.override;
    if (o) {
      return { key: 'strategy', pool, value: o.value.strategy, performanceWeights: o.value.performanceWeights ?? this.cfg.performanceWeights, source: 'runtime', ...o.meta, revision: o.revision };
    }
    const p = this.cfg.pools?.[pool];
    if (p?.strategy !== undefined && p.strategySource !== undefined && p.strategySource !== 'default') {
      return { key: 'strategy', pool, value: p.strategy, performanceWeights: this.cfg.performanceWeights, source: p.strategySource };
    }
    return { key: 'strategy', pool, value: this.cfg.strategy, performanceWeights: this.cfg.performanceWeights, source: `balancer.strategy (${this.cfg.strategySource ?? 'default'})` };
  }

  /** The deadline of a request that gives none: the pool's `acquire_timeout` from this balancer's config. */
  acquireTimeoutOf(pool: string): number {
    return this.cfg.pools?.[pool]?.acquireTimeoutMs ?? DEFAULT_ACQUIRE_TIMEOUT_MS;
  }

  /** Every setting that can change at runtime or per pool, for `shoal status` and the status page. */
  rows(pools: Iterable<string>): SettingRow[] {
    const names = [...new Set([...Object.keys(this.cfg.pools ?? {}), ...pools])].sort();
    const rows: SettingRow[] = [];
    for (const pool of names) {
      const { performanceWeights: _w, ...st } = this.strategyOf(pool);
      rows.push(st);
      const p = this.cfg.pools?.[pool];
      rows.push({ key: 'acquire_timeout', pool, value: this.acquireTimeoutOf(pool), source: p?.acquireTimeoutMs !== undefined ? (p.acquireTimeoutSource ?? 'default') : 'default (pool not in this balancer\'s config)' });
    }
    for (const [nodeId, w] of [...this.weights].sort(([a], [b]) => a.localeCompare(b))) {
      rows.push({ key: `weight.${nodeId}`, nodeId, value: w.weight, source: 'runtime', ...w.meta, revision: w.revision });
    }
    return rows;
  }
}
