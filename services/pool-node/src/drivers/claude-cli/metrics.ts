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
/** A client's totals in one pool on this node (for `shoal status`). */
export interface ClientCost {
  turns: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_creation_tokens: number;
  cost_usd: number;
}

/** Client names kept per pool; more are summed under `_other` (a label per name is a time series). */
export const MAX_CLIENTS = 100;

export interface ClaudeMetrics {
  turn(outcome: TurnOutcome, ms: number, result?: CliMessage, client?: string, costUsd?: number): void;
  apiRetry(status: number | null): void;
  /** Totals by client name since the node started. */
  readonly clients: ReadonlyMap<string, ClientCost>;
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
  clientCost: Counter;
  clientTokens: Counter;
  apiRetries: Counter;
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
    clientCost: new Counter({ name: Metrics.CLAUDE_CLIENT_COST_USD_TOTAL, help: 'Claude cost in USD by holder client name', labelNames: [...LABELS, 'client'], registers: r }),
    clientTokens: new Counter({ name: Metrics.CLAUDE_CLIENT_TOKENS_TOTAL, help: 'Claude tokens by holder client name', labelNames: [...LABELS, 'client', 'type'], registers: r }),
    apiRetries: new Counter({ name: Metrics.CLAUDE_API_RETRIES_TOTAL, help: 'Claude CLI api_retry lines by HTTP status', labelNames: [...LABELS, 'status'], registers: r }),
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
  const clients = new Map<string, ClientCost>();
  const account = (name: string | undefined, u: ReturnType<typeof usageOf>, costUsd: number): string => {
    let key = name || '_unknown';
    if (!clients.has(key) && clients.size >= MAX_CLIENTS) key = '_other';
    let c = clients.get(key);
    if (!c) clients.set(key, (c = { turns: 0, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_creation_tokens: 0, cost_usd: 0 }));
    c.turns++;
    c.input_tokens += u.input;
    c.output_tokens += u.output;
    c.cache_read_tokens += u.cacheRead;
    c.cache_creation_tokens += u.cacheCreation;
    c.cost_usd += costUsd;
    return key;
  };
  if (!registry) {
    return { clients, turn(_o, _ms, result, client, costUsd) { if (result) account(client, usageOf(result), costUsd ?? 0); }, apiRetry() {}, skipped() {}, stalled() {} };
  }
  const s = shared(registry);
  const l = { pool: labels.pool ?? '', node: labels.node ?? '' };
  s.pools.set(l.pool, { labels: l, states });
  return {
    clients,
    turn(outcome, ms, result, client, costUsd = 0) {
      s.turns.inc({ ...l, outcome });
      s.latency.observe(l, ms);
      if (!result) return;
      const u = usageOf(result);
      const c = { ...l, client: account(client, u, costUsd) };
      const types: [string, number][] = [['input', u.input], ['output', u.output], ['cache_read', u.cacheRead], ['cache_creation', u.cacheCreation]];
      for (const [type, n] of types) {
        if (!n) continue;
        s.tokens.inc({ ...l, type }, n);
        s.clientTokens.inc({ ...c, type }, n);
      }
      if (costUsd) { s.cost.inc(l, costUsd); s.clientCost.inc(c, costUsd); }
    },
    apiRetry(status) {
      s.apiRetries.inc({ ...l, status: status === null ? 'none' : String(status) });
    },
    skipped() {
      s.nonJson.inc(l);
    },
    stalled(stage, action) {
      s.stalls.inc({ ...l, stage, action });
    },
  };
}
