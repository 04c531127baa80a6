import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { Metrics } from '@shoal/protocol';
import type { CliMessage } from './lines.js';
import { usageOf } from './lines.js';
import type { SessionState, TurnOutcome } from './session.js';

/**
 * The claude-cli metrics of one pool. The Prometheus objects are shared by
 * every claude pool of a node (one registry, one metric per name); each pool
 * adds its `pool`/`node` labels and reports its sessions to the gauge.
 */
export interface ClaudeMetrics {
  turn(outcome: TurnOutcome, ms: number, result?: CliMessage): void;
  skipped(): void;
  stalled(stage: 'turn' | 'control', action: 'interrupted' | 'killed'): void;
}

const STATES: SessionState[] = ['starting', 'idle', 'turn', 'clearing', 'dead'];
/** A turn takes seconds to minutes. */
const TURN_BUCKETS_MS = [50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000];
const LABELS = ['pool', 'node'];

interface Shared {
  turns: Counter;
  latency: Histogram;
  tokens: Counter;
  cost: Counter;
  nonJson: Counter;
  stalls: Counter;
  /** Per pool: its labels and how to count its sessions by state. */
  pools: Map<string, { labels: Record<string, string>; states: () => Iterable<SessionState> }>;
}

const byRegistry = new WeakMap<Registry, Shared>();

function shared(registry: Registry): Shared {
  let s = byRegistry.get(registry);
  if (s) return s;
  const pools: Shared['pools'] = new Map();
  const r = [registry];
  s = {
    pools,
    turns: new Counter({ name: Metrics.CLAUDE_TURNS_TOTAL, help: 'Claude user turns by outcome', labelNames: [...LABELS, 'outcome'], registers: r }),
    latency: new Histogram({ name: Metrics.CLAUDE_TURN_LATENCY, help: 'Claude turn latency in milliseconds (message written to result line)', labelNames: LABELS, buckets: TURN_BUCKETS_MS, registers: r }),
    tokens: new Counter({ name: Metrics.CLAUDE_TOKENS_TOTAL, help: 'Tokens reported by Claude result lines', labelNames: [...LABELS, 'type'], registers: r }),
    cost: new Counter({ name: Metrics.CLAUDE_COST_USD_TOTAL, help: 'Cost in USD reported by Claude result lines', labelNames: LABELS, registers: r }),
    nonJson: new Counter({ name: Metrics.CLAUDE_NON_JSON_LINES_TOTAL, help: 'Claude stdout lines that were not JSON and were skipped', labelNames: LABELS, registers: r }),
    stalls: new Counter({ name: Metrics.CLAUDE_STALLS_TOTAL, help: 'Claude hang watchdog hits: silent turns interrupted or killed, control requests unanswered', labelNames: [...LABELS, 'stage', 'action'], registers: r }),
  };
  new Gauge({
    name: Metrics.CLAUDE_SESSIONS, help: 'Claude sessions by CLI state', labelNames: [...LABELS, 'state'], registers: r,
    collect() {
      for (const p of pools.values()) {
        const n = Object.fromEntries(STATES.map((st) => [st, 0])) as Record<SessionState, number>;
        for (const st of p.states()) n[st]++;
        for (const st of STATES) this.set({ ...p.labels, state: st }, n[st]);
      }
    },
  });
  byRegistry.set(registry, s);
  return s;
}

export function claudeMetrics(registry: Registry | undefined, labels: Record<string, string>, states: () => Iterable<SessionState>): ClaudeMetrics {
  if (!registry) return { turn() {}, skipped() {}, stalled() {} };
  const s = shared(registry);
  const l = { pool: labels.pool ?? '', node: labels.node ?? '' };
  s.pools.set(l.pool, { labels: l, states });
  return {
    turn(outcome, ms, result) {
      s.turns.inc({ ...l, outcome });
      s.latency.observe(l, ms);
      if (!result) return;
      const u = usageOf(result);
      if (u.input) s.tokens.inc({ ...l, type: 'input' }, u.input);
      if (u.output) s.tokens.inc({ ...l, type: 'output' }, u.output);
      if (u.cacheRead) s.tokens.inc({ ...l, type: 'cache_read' }, u.cacheRead);
      if (u.cacheCreation) s.tokens.inc({ ...l, type: 'cache_creation' }, u.cacheCreation);
      if (u.costUsd) s.cost.inc(l, u.costUsd);
    },
    skipped() {
      s.nonJson.inc(l);
    },
    stalled(stage, action) {
      s.stalls.inc({ ...l, stage, action });
    },
  };
}
