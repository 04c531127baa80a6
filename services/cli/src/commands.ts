import { ErrorCodes, isToken, ShoalError, type Lease as LeaseInfo } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { intFlag, UsageError, type FlagValues } from './args.js';
import { fetchClaudeCosts, fetchStatus, HINT, isNoResponders, UnreachableError, type ClientCostRow, type ClusterStatus, type StatusQuery } from './cluster.js';
import { EXIT, type Command, type Ctx } from './context.js';
import { ms, paint, table } from './format.js';
import { operatorName, printSettings } from './operator-commands.js';

export const STRATEGY_NAMES = ['round_robin', 'least_connections', 'weighted_round_robin', 'performance_based', 'p2c'] as const;
const DEFAULT_PERFORMANCE_WEIGHTS = { latency: 0.4, throughput: 0.3, errorRate: 0.2, resource: 0.1 };

function token(what: string, v: string): string {
  if (!isToken(v)) throw new UsageError(`${what} '${v}' is not valid: 1-64 of A-Z a-z 0-9 _ -`);
  return v;
}

const elapsed = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Say who did not answer: the balancers, or the one node asked. */
async function placed<T>(ctx: Ctx, pool: string, what: 'acquire' | 'exec', nodeId: string | undefined, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!isNoResponders(err)) throw err;
    if (nodeId) throw new UnreachableError(`no node ${nodeId} answers on ${what === 'acquire' ? ctx.s.nodeAcquire(nodeId) : ctx.s.nodeExec(nodeId)} (see \`shoal status\` for the node ids)`, { nodeId });
    throw new UnreachableError(`no balancer answers on ${what === 'acquire' ? ctx.s.poolAcquire(pool) : ctx.s.poolExec(pool)}; ${HINT}`);
  }
}

// ---- status ---------------------------------------------------------------

interface PoolSummaryRow { nodes: number; eligible: number; total: number; idle: number; active: number; waiting: number; creating: number; max: number; placeable?: { idle: number; room: number; full: number } }

function printStatus(ctx: Ctx, st: ClusterStatus): void {
  // Each pool has its own strategy (config, or an operator's override for all): say which when they differ.
  const perPool = ((st.settings as { values?: { key: string; value: unknown }[] } | undefined)?.values ?? []).filter((r) => r.key === 'strategy').map((r) => String(r.value));
  const distinct = [...new Set(perPool)];
  const strategy = distinct.length > 1 ? `per pool (${distinct.join(', ')}; see SETTINGS)` : distinct[0] ?? st.strategy ?? 'unknown (no balancer answered)';
  ctx.out(`strategy: ${paint(ctx.stdout, 'bold', strategy)}${st.balancerId ? paint(ctx.stdout, 'gray', `   (balancer ${st.balancerId})`) : ''}`);
  if (st.source === 'heartbeats') ctx.out(paint(ctx.stdout, 'yellow', `note: ${String(st.note)}`));
  const summary = st.summary as { nodes: number; states: Record<string, number>; pools: Record<string, PoolSummaryRow> } | undefined;
  if (summary && typeof summary === 'object' && summary.pools) {
    ctx.out(`nodes: ${summary.nodes} (${Object.entries(summary.states ?? {}).map(([k, v]) => `${v} ${k}`).join(', ') || 'none'})`);
    const rows = Object.entries(summary.pools).sort(([a], [b]) => a.localeCompare(b)).map(([name, p]) =>
      [name, p.nodes, p.eligible, p.total, p.idle, p.active, p.waiting, p.creating, p.max, p.placeable ? `${p.placeable.idle}/${p.placeable.room}/${p.placeable.full}` : '-']);
    if (rows.length > 0) ctx.out(table(['POOL', 'NODES', 'ELIGIBLE', 'TOTAL', 'IDLE', 'ACTIVE', 'WAITING', 'CREATING', 'MAX', 'IDLE/ROOM/FULL'], rows, new Set([1, 2, 3, 4, 5, 6, 7, 8])));
  }
  const pg = st.page as { returned: number; matched: number; next: string | null } | undefined;
  if (st.nodes.length === 0) { ctx.out(pg && pg.matched > 0 ? '' : 'no nodes'); return; }
  const rows: (string | number)[][] = [];
  for (const n of st.nodes) {
    // The health-checkers' verdict (balancer status only): the node's in STATE, why in NOTE; a pool's backend in its NOTE.
    const health = n.health as { healthy?: boolean; reason?: string; pools?: Record<string, { healthy?: boolean; reason?: string }> } | null | undefined;
    const verdict = health?.healthy === true ? 'healthy' : health?.healthy === false || n.unhealthy === true ? 'unhealthy' : false;
    const flags = [n.draining && 'draining', verdict, typeof n.circuit === 'string' && n.circuit !== 'closed' && `circuit ${n.circuit.replace('_', '-')}`].filter(Boolean);
    const state = [n.state, ...flags].join(',');
    const head = [n.nodeId, state, n.pid ?? '-', n.inFlight, n.weight ?? '-'];
    const pools = Object.entries(n.pools);
    if (pools.length === 0) rows.push([...head, '-', '', '', '', '', '', '', '']);
    pools.forEach(([name, p], i) => {
      const cut = (x: string) => (x.length > 80 ? x.slice(0, 79) + '…' : x);
      const poolHealth = health?.pools?.[name];
      const note = [
        i === 0 && health?.healthy === false && `unhealthy: ${cut(health.reason ?? 'no reason given')}`,
        poolHealth?.healthy === false && `backend down: ${cut(poolHealth.reason ?? 'no reason given')}`,
        p.available === false && `unavailable${typeof p.reason === 'string' ? ': ' + cut(p.reason) : ''}`,
      ].filter(Boolean).join('; ');
      rows.push([...(i === 0 ? head : ['', '', '', '', '']), name, p.total, p.idle, p.active, p.waiting, p.target, p.max, note]);
    });
  }
  ctx.out(table(['NODE', 'STATE', 'PID', 'INFLIGHT', 'WEIGHT', 'POOL', 'TOTAL', 'IDLE', 'ACTIVE', 'WAITING', 'TARGET', 'MAX', 'NOTE'], rows, new Set([2, 3, 4, 6, 7, 8, 9, 10, 11])));
  if (pg && pg.next) ctx.out(paint(ctx.stdout, 'gray', `${pg.returned} of ${pg.matched} nodes shown; next page: --cursor ${pg.next} (or --all)`));
  printSettings(ctx, (st.settings as { values?: unknown } | undefined)?.values);
}

/** Claude pools: tokens and USD by client name, summed over the nodes. */
function printCosts(ctx: Ctx, costs: ClientCostRow[]): void {
  if (costs.length === 0) return;
  ctx.out('');
  ctx.out(paint(ctx.stdout, 'bold', 'claude cost by client'));
  const rows = costs.map((c) => [c.pool, c.client, c.turns, c.inputTokens, c.outputTokens, c.costUsd.toFixed(4)]);
  ctx.out(table(['POOL', 'CLIENT', 'TURNS', 'INPUT', 'OUTPUT', 'USD'], rows, new Set([2, 3, 4, 5])));
}

const status: Command = {
  name: 'status',
  usage: '',
  summary: 'nodes, their state and pools (total/idle/active/waiting/target/max), the strategy, the autoscaler; Claude cost by client',
  details: 'Asks a balancer (shoal.admin.status); with no balancer, listens to the nodes\' heartbeats for ~1.2 s. Shows per-pool totals over every node and one page of nodes (by id). The autoscaler leader (shoal.autoscaler.status) adds each pool\'s target, utilization, last decision and desired pool-nodes. Nodes with a claude-cli pool are asked for their tokens and USD by client name.',
  flags: {
    pool: { type: 'string', arg: 'name', help: 'only nodes serving this pool' },
    node: { type: 'string', arg: 'id', help: 'only this node' },
    limit: { type: 'number', arg: 'n', help: 'nodes per page (default 50, at most 1000; 0 = totals only)' },
    cursor: { type: 'string', arg: 'id', help: 'the page after this node id (as printed at the end of a page)' },
    all: { type: 'boolean', help: 'every page, one request per page' },
  },
  args: [0, 0],
  async run(ctx, _args, flags) {
    const q: StatusQuery = { limit: intFlag(flags, 'limit', 50, 0, 1000) };
    if (typeof flags.pool === 'string') q.pool = token('pool', flags.pool);
    if (typeof flags.node === 'string') q.node = token('node id', flags.node);
    if (typeof flags.cursor === 'string') q.cursor = token('cursor', flags.cursor);
    const nc = await ctx.nats();
    const [st, autoscaler] = await Promise.all([fetchStatus(nc, ctx.s, ctx.timeout(5000), q), fetchAutoscaler(ctx)]);
    // --all: follow the cursors (each page is its own bounded reply).
    for (let pg = st.page as { next?: string | null } | undefined; flags.all === true && pg?.next && st.source === 'balancer';) {
      const more = await fetchStatus(nc, ctx.s, ctx.timeout(5000), { ...q, cursor: pg.next });
      st.nodes.push(...more.nodes);
      pg = more.page as { next?: string | null } | undefined;
      st.page = more.page;
    }
    const costs = await fetchClaudeCosts(nc, ctx.s, st.nodes, Math.min(2000, ctx.timeout(5000)));
    if (ctx.json) ctx.emit({ ...st, autoscaler, ...(costs.length ? { claudeCosts: costs } : {}) });
    else { printStatus(ctx, st); printAutoscaler(ctx, autoscaler); printCosts(ctx, costs); }
    return EXIT.OK;
  },
};

interface AutoscalerPool { target: number | null; requested: number | null; utilization: number | null; demand: number | null; nodes: number; desired: number | null; autoScaling: boolean; predictive: boolean; lastDecision: { at: number; direction: string; reason: string; target: number } | null }
interface AutoscalerStatus { leader: string; epoch: number; pools: Record<string, AutoscalerPool> }

/** The autoscaler leader's view, or null when none answers (not running, or between leaders). */
async function fetchAutoscaler(ctx: Ctx): Promise<AutoscalerStatus | null> {
  try {
    return await call<AutoscalerStatus>(await ctx.nats(), ctx.s.autoscalerStatus, {}, Math.min(ctx.timeout(2000), 2000));
  } catch {
    return null;
  }
}

function printAutoscaler(ctx: Ctx, a: AutoscalerStatus | null): void {
  if (!a) { ctx.out(paint(ctx.stdout, 'gray', 'autoscaler: no leader answers (not running?)')); return; }
  ctx.out(`autoscaler: leader ${paint(ctx.stdout, 'bold', a.leader)}  epoch ${a.epoch}`);
  const rows = Object.entries(a.pools).map(([name, p]) => {
    const d = p.lastDecision;
    const last = d ? `${d.direction} to ${d.target} (${d.reason}, ${ms(Date.now() - d.at)} ago)` : '-';
    return [name, p.target ?? '-', p.requested ?? '-', p.utilization ?? '-', p.nodes, p.desired ?? '-', p.autoScaling ? (p.predictive ? 'on+predictive' : 'on') : 'off', last];
  });
  if (rows.length) ctx.out(table(['POOL', 'TARGET', 'REQUESTED', 'UTIL', 'NODES', 'DESIRED', 'AUTO', 'LAST DECISION'], rows, new Set([1, 2, 3, 4, 5])));
}

// ---- acquire --------------------------------------------------------------

const acquire: Command = {
  name: 'acquire',
  usage: '<pool>',
  summary: 'lease a resource through the balancer, hold it, release it',
  details: 'Prints the lease (node, resource, reused, time taken). Ctrl-C during --hold releases at once (exit 130).',
  flags: {
    hold: { type: 'number', arg: 'ms', help: 'hold the lease this long before releasing (default 0)' },
    priority: { type: 'number', arg: 'n', help: 'higher is served first (-1000..1000)' },
    ttl: { type: 'number', arg: 'ms', help: 'lease TTL (renewed in the background while held)' },
    node: { type: 'string', arg: 'id', help: 'skip the balancer and ask this node' },
    reset: { type: 'boolean', help: 'release with reset (e.g. clear a session\'s context)' },
    destroy: { type: 'boolean', help: 'release with destroy (the resource is not reused)' },
  },
  args: [1, 1],
  async run(ctx, [poolArg], flags) {
    const pool = token('pool', poolArg!);
    const hold = intFlag(flags, 'hold', 0, 0, 86_400_000);
    const priority = flags.priority === undefined ? undefined : intFlag(flags, 'priority', 0, -1000, 1000);
    const ttlMs = flags.ttl === undefined ? undefined : intFlag(flags, 'ttl', 0, 1, 86_400_000);
    const nodeId = typeof flags.node === 'string' ? token('node id', flags.node) : undefined;
    // No --timeout: the pool's acquire_timeout applies.
    const timeoutMs = ctx.timeoutMs;
    const client = await ctx.sdk();
    ctx.note(paint(ctx.stderr, 'gray', `acquiring from pool ${pool}${nodeId ? ` on ${nodeId}` : ''} (deadline ${timeoutMs === undefined ? 'the pool\'s acquire_timeout' : ms(timeoutMs)})...`));
    const t0 = process.hrtime.bigint();
    const lease = await placed(ctx, pool, 'acquire', nodeId, () => client.acquire(pool, { timeoutMs, priority, ttlMs, nodeId }));
    const acquireMs = elapsed(t0);
    const info: LeaseInfo = lease.info;
    if (!ctx.json) {
      ctx.out(`lease ${info.leaseId}  node ${paint(ctx.stdout, 'bold', info.nodeId)}  resource ${info.resourceId}  reused ${info.reused ? 'yes' : 'no'}  ttl ${ms(info.ttlMs)}  acquired in ${ms(acquireMs)}`);
    }
    let interrupted = false;
    if (hold > 0) {
      ctx.note(paint(ctx.stderr, 'gray', `holding for ${ms(hold)} (Ctrl-C releases now)...`));
      await new Promise<void>((resolve) => {
        const done = () => { clearTimeout(t); process.off('SIGINT', onSig); process.off('SIGTERM', onSig); resolve(); };
        const onSig = () => { interrupted = true; done(); };
        const t = setTimeout(done, hold);
        process.on('SIGINT', onSig);
        process.on('SIGTERM', onSig);
      });
    }
    const heldMs = elapsed(t0) - acquireMs;
    await lease.release({ reset: flags.reset === true, destroy: flags.destroy === true });
    // The lease's secret stays in this process: output ends up in terminals and CI logs.
    const { secret: _secret, ...shown } = info;
    if (ctx.json) ctx.emit({ ...shown, acquireMs: round(acquireMs), heldMs: round(heldMs), released: true, interrupted });
    else ctx.out(`released after ${ms(heldMs)}${interrupted ? ' (interrupted)' : ''}`);
    return interrupted ? EXIT.INTERRUPTED : EXIT.OK;
  },
};

const round = (n: number) => Math.round(n * 100) / 100;

// ---- exec -----------------------------------------------------------------

function parseJsonArg(s: string | undefined): unknown {
  if (s === undefined) return undefined;
  try {
    return JSON.parse(s);
  } catch (err) {
    throw new UsageError(`args must be JSON, e.g. '{"a":1}' (${(err as Error).message})`);
  }
}

const exec: Command = {
  name: 'exec',
  usage: '<pool> <op> [json-args]',
  summary: 'one-shot operation (acquire + exec + release inside a node); streams events',
  details: 'Events are printed as they arrive, then the result. With --json: {"event":...} per event, then {"result":...,"ms":...}.',
  flags: {
    priority: { type: 'number', arg: 'n', help: 'higher is served first (-1000..1000)' },
    node: { type: 'string', arg: 'id', help: 'skip the balancer and run on this node' },
  },
  args: [2, 3],
  async run(ctx, [poolArg, op, argsJson], flags) {
    const pool = token('pool', poolArg!);
    const args = parseJsonArg(argsJson);
    const priority = flags.priority === undefined ? undefined : intFlag(flags, 'priority', 0, -1000, 1000);
    const nodeId = typeof flags.node === 'string' ? token('node id', flags.node) : undefined;
    const client = await ctx.sdk();
    const t0 = process.hrtime.bigint();
    const run = client.exec(pool, op!, args, { timeoutMs: ctx.timeout(30_000), priority, nodeId });
    const result = await placed(ctx, pool, 'exec', nodeId, async () => {
      for await (const event of run) {
        if (ctx.json) ctx.emit({ event });
        else ctx.out(typeof event === 'string' ? event : JSON.stringify(event));
      }
      return run.result;
    });
    const took = elapsed(t0);
    if (ctx.json) ctx.emit({ result: result ?? null, ms: round(took) });
    else {
      ctx.out(typeof result === 'string' ? result : JSON.stringify(result ?? null, null, 2));
      ctx.note(paint(ctx.stderr, 'gray', `done in ${ms(took)}`));
    }
    return EXIT.OK;
  },
};

// ---- strategy, weight -----------------------------------------------------

/** Default deadline of a steering command: long enough to ride out a NATS server loss (leader election, reconnects). */
const STEER_TIMEOUT_MS = 15_000;
/** One try's share: a request lost with a dying server is sent again after this (a slow answer to an earlier try is harmless: the write is idempotent). */
const STEER_TRY_MS = 3000;
/** No responders is retried this long only: balancers reconnecting after a server loss, not "none running". */
const STEER_NO_RESPONDERS_MS = 3000;

/**
 * An admin request to any balancer, retried until its deadline while the
 * answer is "unavailable" (the settings bucket lost its leader with a
 * server) or no answer comes (the balancer that took it died, or ours
 * reconnects): setting a strategy or a weight is idempotent. No responders
 * when the deadline comes means no balancer is running.
 */
async function admin<T>(ctx: Ctx, subject: string, body: Record<string, unknown>): Promise<T> {
  const t0 = Date.now();
  const deadline = t0 + ctx.timeout(STEER_TIMEOUT_MS);
  let pause = 100;
  for (;;) {
    const left = deadline - Date.now();
    try {
      return await call<T>(await ctx.nats(), subject, body, Math.max(1, Math.min(left, STEER_TRY_MS)));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const reason = (err as { details?: { reason?: unknown } }).details?.reason;
      const retry = isNoResponders(err) ? Date.now() - t0 < STEER_NO_RESPONDERS_MS : code === ErrorCodes.UNAVAILABLE && reason !== 'no_jetstream';
      if (!retry || deadline - Date.now() <= pause) {
        if (isNoResponders(err)) throw new UnreachableError(`no balancer answers on ${subject}; ${HINT}`);
        throw err;
      }
      ctx.note(paint(ctx.stderr, 'gray', `retrying: ${(err as Error).message}`));
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 1000);
    }
  }
}

const weightFlag = (flags: FlagValues, name: string): number | undefined => {
  const v = flags[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || v < 0) throw new UsageError(`--${name} must be a number >= 0`);
  return v;
};

const strategy: Command = {
  name: 'strategy',
  usage: `<${STRATEGY_NAMES.join('|')}>`,
  summary: 'override the placement strategy of every pool on every balancer (kept in the settings KV bucket)',
  details: 'The weights apply to performance_based only; unset ones keep the defaults 0.4/0.3/0.2/0.1.',
  flags: {
    latency: { type: 'number', arg: 'w', help: 'performance_based: weight of latency' },
    throughput: { type: 'number', arg: 'w', help: 'performance_based: weight of throughput' },
    'error-rate': { type: 'number', arg: 'w', help: 'performance_based: weight of the error rate' },
    resource: { type: 'number', arg: 'w', help: 'performance_based: weight of resource usage' },
  },
  args: [1, 1],
  async run(ctx, [name], flags) {
    if (!(STRATEGY_NAMES as readonly string[]).includes(name!)) throw new UsageError(`unknown strategy '${name}': one of ${STRATEGY_NAMES.join(', ')}`);
    const given = { latency: weightFlag(flags, 'latency'), throughput: weightFlag(flags, 'throughput'), errorRate: weightFlag(flags, 'error-rate'), resource: weightFlag(flags, 'resource') };
    const anyWeight = Object.values(given).some((v) => v !== undefined);
    if (anyWeight && name !== 'performance_based') throw new UsageError('--latency, --throughput, --error-rate and --resource apply to performance_based only');
    const body: Record<string, unknown> = { strategy: name, by: operatorName() };
    if (anyWeight) {
      body.performanceWeights = Object.fromEntries(Object.entries(DEFAULT_PERFORMANCE_WEIGHTS).map(([k, d]) => [k, given[k as keyof typeof given] ?? d]));
    }
    const reply = await admin<Record<string, unknown>>(ctx, ctx.s.adminStrategy, body);
    if (ctx.json) ctx.emit({ strategy: name, ...(body.performanceWeights ? { performanceWeights: body.performanceWeights } : {}), reply: reply ?? null });
    else ctx.out(`strategy set to ${paint(ctx.stdout, 'bold', name!)}${body.performanceWeights ? ` with weights ${JSON.stringify(body.performanceWeights)}` : ''}`);
    return EXIT.OK;
  },
};

const weight: Command = {
  name: 'weight',
  usage: '<node> <weight>',
  summary: 'set a known node\'s placement weight (weighted_round_robin), 0..1000',
  flags: {},
  args: [2, 2],
  async run(ctx, [nodeArg, w]) {
    const nodeId = token('node id', nodeArg!);
    const value = Number(w);
    if (w!.trim() === '' || !Number.isFinite(value) || value < 0 || value > 1000) throw new UsageError(`weight must be a number from 0 to 1000, got '${w}'`);
    const reply = await admin<Record<string, unknown>>(ctx, ctx.s.adminWeight, { nodeId, weight: value, by: operatorName() });
    if (ctx.json) ctx.emit({ nodeId, weight: value, reply: reply ?? null });
    else ctx.out(`weight of ${nodeId} set to ${value}`);
    return EXIT.OK;
  },
};

// ---- scale, drain ---------------------------------------------------------

/** A request to one node; no responders means no such node is running. */
async function toNode<T>(ctx: Ctx, nodeId: string, subject: string, body: Record<string, unknown>): Promise<T> {
  try {
    return await call<T>(await ctx.nats(), subject, body, ctx.timeout(5000));
  } catch (err) {
    if (isNoResponders(err)) throw new UnreachableError(`no node ${nodeId} answers on ${subject} (see \`shoal status\` for the node ids)`, { nodeId });
    throw err;
  }
}

const OPS: Record<string, 'up' | 'down' | 'target'> = { up: 'up', down: 'down', to: 'target', target: 'target' };

interface ClusterScaleReply { pool: string; from: number; requested: number; applied: number; min: number; max: number; clamped: boolean; clampedTo?: 'min' | 'max'; nodes: Record<string, number>; epoch: number; leader: string }

/** Cluster-wide: the autoscaler leader spreads the pool's target over its live nodes and keeps it in the settings bucket. */
async function scaleCluster(ctx: Ctx, pool: string, op: 'up' | 'down' | 'target', n: number): Promise<number> {
  const subject = ctx.s.adminScale(pool);
  let r: ClusterScaleReply;
  try {
    r = await call<ClusterScaleReply>(await ctx.nats(), subject, { pool, op, n }, ctx.timeout(5000));
  } catch (err) {
    if (isNoResponders(err)) throw new UnreachableError(`no autoscaler leader answers on ${subject}; is the autoscaler running? (--node <id> scales one node directly)`);
    throw err;
  }
  if (ctx.json) ctx.emit({ op, n, ...r });
  else {
    const spreadOver = Object.entries(r.nodes).map(([id, t]) => `${id}=${t}`).join(' ');
    ctx.out(`pool ${paint(ctx.stdout, 'bold', pool)}: target ${r.applied} (was ${r.from}) over ${Object.keys(r.nodes).length} node(s): ${spreadOver}  ${paint(ctx.stdout, 'gray', `(autoscaler ${r.leader}, epoch ${r.epoch})`)}`);
  }
  if (!r.clamped) return EXIT.OK;
  ctx.stderr.write(`error: asked for ${r.requested}, clamped to ${r.applied}: the live nodes hold ${r.min}..${r.max} (${r.clampedTo ?? 'bounds'}); the request is kept and applied as nodes join\n`);
  return EXIT.FAILED;
}

const scale: Command = {
  name: 'scale',
  usage: '<pool> up|down|to <n>',
  summary: 'change a pool\'s cluster-wide target (the autoscaler leader spreads it over the nodes), or one node\'s',
  details: [
    'Cluster-wide: `to 12` asks for 12 resources in the whole pool, spread over its live nodes within each node\'s min..max',
    'and weight; `up 2` / `down 2` move the cluster target. Kept in the settings KV bucket (target.<pool>). Exits 1 when the',
    'request was clamped to what the nodes hold. With --node: the old per-node form, sent to that node only.',
  ].join('\n'),
  flags: {
    node: { type: 'string', arg: 'id', help: 'set this one node\'s target instead (sizes are per node)' },
  },
  args: [3, 3],
  async run(ctx, [poolArg, opArg, nArg], flags) {
    const pool = token('pool', poolArg!);
    const op = OPS[opArg!];
    if (!op) throw new UsageError(`scale takes up, down or to, got '${opArg}'`);
    const n = Number(nArg);
    if (!/^\d+$/.test(nArg!) || n > 100_000) throw new UsageError(`n must be an integer from 0 to 100000, got '${nArg}'`);
    if (typeof flags.node !== 'string') return scaleCluster(ctx, pool, op, n);
    const nodes = [token('node id', flags.node)];
    type Result =
      | { nodeId: string; ok: true; target?: number; total?: number; min?: number; max?: number }
      | { nodeId: string; ok: false; error: { code: string; message: string }; unreachable: boolean };
    const results = await Promise.all(nodes.map(async (nodeId): Promise<Result> => {
      try {
        const r = await toNode<Record<string, unknown>>(ctx, nodeId, ctx.s.nodeScale(nodeId), { pool, op, n });
        return { ...r, nodeId, ok: true };
      } catch (err) {
        const e = ShoalError.from(err);
        return { nodeId, ok: false, error: { code: e.code, message: e.message }, unreachable: err instanceof UnreachableError };
      }
    }));
    if (ctx.json) ctx.emit({ pool, op, n, results: results.map((r) => (r.ok ? r : { nodeId: r.nodeId, ok: false, error: r.error })) });
    else {
      ctx.out(table(['NODE', 'RESULT', 'TARGET', 'TOTAL', 'MIN', 'MAX'], results.map((r) =>
        r.ok ? [r.nodeId, 'ok', String(r.target ?? ''), String(r.total ?? ''), String(r.min ?? ''), String(r.max ?? '')] : [r.nodeId, `failed: ${r.error.code}`, '', '', '', '']), new Set([2, 3, 4, 5])));
    }
    const failed = results.filter((r) => !r.ok);
    for (const f of failed) if (!f.ok) ctx.stderr.write(`error: ${f.error.code}: ${f.error.message}\n`);
    if (failed.length === 0) return EXIT.OK;
    return failed.length === results.length && failed.every((f) => !f.ok && f.unreachable) ? EXIT.UNREACHABLE : EXIT.FAILED;
  },
};

const drain: Command = {
  name: 'drain',
  usage: '<node>',
  summary: 'drain a node: refuse new work, let leases come back within the grace period',
  flags: {
    grace: { type: 'number', arg: 'ms', help: 'grace period for held leases (default: the node\'s drain_grace)' },
  },
  args: [1, 1],
  async run(ctx, [nodeArg], flags) {
    const nodeId = token('node id', nodeArg!);
    const graceMs = flags.grace === undefined ? undefined : intFlag(flags, 'grace', 0, 0, 3_600_000);
    const reply = await toNode<Record<string, unknown>>(ctx, nodeId, ctx.s.nodeDrain(nodeId), graceMs === undefined ? {} : { graceMs });
    if (ctx.json) ctx.emit({ nodeId, ...reply });
    else ctx.out(`${nodeId} ${reply?.already ? 'was already draining' : 'is draining'}${graceMs !== undefined ? ` (grace ${ms(graceMs)})` : ''}`);
    return EXIT.OK;
  },
};

export const COMMANDS: Command[] = [status, acquire, exec, strategy, weight, scale, drain];
