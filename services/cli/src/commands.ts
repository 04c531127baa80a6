import { ErrorCodes, isToken, ShoalError, type Lease as LeaseInfo } from '@shoal/protocol';
import { call } from '@shoal/runtime';
import { intFlag, UsageError, type FlagValues } from './args.js';
import { fetchStatus, HINT, isNoResponders, UnreachableError, type ClusterStatus } from './cluster.js';
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

function printStatus(ctx: Ctx, st: ClusterStatus): void {
  // Each pool has its own strategy (config, or an operator's override for all): say which when they differ.
  const perPool = ((st.settings as { values?: { key: string; value: unknown }[] } | undefined)?.values ?? []).filter((r) => r.key === 'strategy').map((r) => String(r.value));
  const distinct = [...new Set(perPool)];
  const strategy = distinct.length > 1 ? `per pool (${distinct.join(', ')}; see SETTINGS)` : distinct[0] ?? st.strategy ?? 'unknown (no balancer answered)';
  ctx.out(`strategy: ${paint(ctx.stdout, 'bold', strategy)}${st.balancerId ? paint(ctx.stdout, 'gray', `   (balancer ${st.balancerId})`) : ''}`);
  if (st.source === 'heartbeats') ctx.out(paint(ctx.stdout, 'yellow', `note: ${String(st.note)}`));
  if (st.nodes.length === 0) { ctx.out('no nodes'); return; }
  const rows: (string | number)[][] = [];
  for (const n of st.nodes) {
    const flags = [n.draining && 'draining', n.unhealthy === true && 'unhealthy', typeof n.circuit === 'string' && n.circuit !== 'closed' && `circuit ${n.circuit.replace('_', '-')}`].filter(Boolean);
    const state = [n.state, ...flags].join(',');
    const head = [n.nodeId, state, n.pid ?? '-', n.inFlight, n.weight ?? '-'];
    const pools = Object.entries(n.pools);
    if (pools.length === 0) rows.push([...head, '-', '', '', '', '', '', '', '']);
    pools.forEach(([name, p], i) => {
      const note = p.available === false ? `unavailable${typeof p.reason === 'string' ? ': ' + (p.reason.length > 80 ? p.reason.slice(0, 79) + '…' : p.reason) : ''}` : '';
      rows.push([...(i === 0 ? head : ['', '', '', '', '']), name, p.total, p.idle, p.active, p.waiting, p.target, p.max, note]);
    });
  }
  ctx.out(table(['NODE', 'STATE', 'PID', 'INFLIGHT', 'WEIGHT', 'POOL', 'TOTAL', 'IDLE', 'ACTIVE', 'WAITING', 'TARGET', 'MAX', 'NOTE'], rows, new Set([2, 3, 4, 6, 7, 8, 9, 10, 11])));
  printSettings(ctx, (st.settings as { values?: unknown } | undefined)?.values);
}

const status: Command = {
  name: 'status',
  usage: '',
  summary: 'nodes, their state and pools (total/idle/active/waiting/target/max), the strategy',
  details: 'Asks a balancer (shoal.admin.status); with no balancer, listens to the nodes\' heartbeats for ~1.2 s.',
  flags: {},
  args: [0, 0],
  async run(ctx) {
    const st = await fetchStatus(await ctx.nats(), ctx.s, ctx.timeout(5000));
    if (ctx.json) ctx.emit(st);
    else printStatus(ctx, st);
    return EXIT.OK;
  },
};

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
    if (ctx.json) ctx.emit({ ...info, acquireMs: round(acquireMs), heldMs: round(heldMs), released: true, interrupted });
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

/** An admin request to any balancer; no responders means no balancer is running. */
async function admin<T>(ctx: Ctx, subject: string, body: Record<string, unknown>): Promise<T> {
  try {
    return await call<T>(await ctx.nats(), subject, body, ctx.timeout(5000));
  } catch (err) {
    if (isNoResponders(err)) throw new UnreachableError(`no balancer answers on ${subject}; ${HINT}`);
    throw err;
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

const scale: Command = {
  name: 'scale',
  usage: '<pool> up|down|to <n>',
  summary: 'change a pool\'s target size on every node that has it (or one node)',
  details: 'Sizes are per node: `to 3` sets the target of each node to 3, `up 2` adds 2 on each. The target stays within min..max.',
  flags: {
    node: { type: 'string', arg: 'id', help: 'only this node' },
  },
  args: [3, 3],
  async run(ctx, [poolArg, opArg, nArg], flags) {
    const pool = token('pool', poolArg!);
    const op = OPS[opArg!];
    if (!op) throw new UsageError(`scale takes up, down or to, got '${opArg}'`);
    const n = Number(nArg);
    if (!/^\d+$/.test(nArg!) || n > 100_000) throw new UsageError(`n must be an integer from 0 to 100000, got '${nArg}'`);
    let nodes: string[];
    if (typeof flags.node === 'string') nodes = [token('node id', flags.node)];
    else {
      const st = await fetchStatus(await ctx.nats(), ctx.s, ctx.timeout(5000));
      nodes = st.nodes.filter((x) => x.state !== 'gone' && !x.draining && x.pools[pool] !== undefined).map((x) => x.nodeId);
      if (nodes.length === 0) {
        const known = [...new Set(st.nodes.flatMap((x) => Object.keys(x.pools)))];
        throw new ShoalError(ErrorCodes.POOL_NOT_FOUND, `no live node has pool ${pool} (pools: ${known.join(', ') || 'none'})`);
      }
    }
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
