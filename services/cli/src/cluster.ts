import { connect as netConnect } from 'node:net';
import { ErrorCodes, parseHeartbeat, ShoalError, type Heartbeat, type Subjects } from '@shoal/protocol';
import { call, connectNats, type NatsConnection, type NatsSettings } from '@shoal/runtime';

/** Message appended to every "cluster not reachable" error. */
export const HINT = 'is `npm start` (shoal up) running?';

/**
 * The cluster cannot be reached: NATS refuses the connection, or nobody
 * answers on a subject. Exit code 3.
 */
export class UnreachableError extends ShoalError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(ErrorCodes.UNAVAILABLE, message, { details: { reason: 'unreachable', ...details } });
    this.name = 'UnreachableError';
  }
}

/** `nats://h:p,nats://h2:p2` → list of URLs; a bare `host:port` gets `nats://`. */
export function serverList(url: string): string[] {
  return url.split(',').map((u) => u.trim()).filter(Boolean).map((u) => (u.includes('://') ? u : `nats://${u}`));
}

function hostPort(url: string): { host: string; port: number } | undefined {
  try {
    const u = new URL(url);
    return { host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1', port: u.port ? Number(u.port) : 4222 };
  } catch {
    return undefined;
  }
}

/** Resolves with the socket error code, or '' when the TCP connection opened. */
export function probeTcp(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect({ host, port });
    const t = setTimeout(() => { s.destroy(); resolve('ETIMEDOUT'); }, timeoutMs);
    s.once('connect', () => { clearTimeout(t); s.destroy(); resolve(''); });
    s.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(t); resolve(e.code ?? 'ERROR'); });
  });
}

/**
 * Connect for one command. The runtime's connection retries forever (right
 * for a service, wrong for a command), so first check that some server
 * accepts a TCP connection, then give the NATS handshake a deadline.
 */
export async function openNats(url: string, timeoutMs: number, auth: Omit<NatsSettings, 'servers'> = {}): Promise<NatsConnection> {
  const servers = serverList(url);
  if (servers.length === 0) throw new UnreachableError('no NATS URL given');
  const probes = await Promise.all(servers.map(async (s) => {
    const hp = hostPort(s);
    return hp ? probeTcp(hp.host, hp.port, Math.min(timeoutMs, 3000)) : 'EINVAL';
  }));
  if (!probes.includes('')) {
    const why = probes[0] === 'ECONNREFUSED' ? 'connection refused' : probes[0] === 'EINVAL' ? 'not a valid URL' : probes[0]!;
    throw new UnreachableError(`cannot reach NATS at ${servers.join(',')} (${why}); ${HINT}`, { servers });
  }
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new UnreachableError(`no NATS handshake from ${servers.join(',')} within ${timeoutMs} ms`, { servers })), timeoutMs);
  });
  try {
    return await Promise.race([connectNats({ servers, name: 'shoal-cli', ...auth }), deadline]);
  } catch (err) {
    if (/authori[sz]ation/i.test(String((err as Error).message))) {
      throw new UnreachableError(`NATS at ${servers.join(',')} refused ${auth.nkeySeedFile ? `the key in ${auth.nkeySeedFile}` : 'a connection without credentials'} (authorization violation): with roles on, set SHOAL_CREDS_DIR to \`shoal up\`'s creds directory or SHOAL_NATS_NKEY_SEED_FILE to the admin key (docs/security.md)`, { servers, reason: 'unauthorized' });
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

export interface PoolRow {
  total: number;
  idle: number;
  active: number;
  waiting: number;
  creating: number;
  target: number;
  min: number;
  max: number;
  [k: string]: unknown;
}

export interface NodeRow {
  nodeId: string;
  /** alive, suspect, gone (the balancer's view); alive when read from a heartbeat. */
  state: string;
  draining: boolean;
  host: string;
  pid: number | null;
  inFlight: number;
  weight: number | null;
  pools: Record<string, PoolRow>;
  [k: string]: unknown;
}

export interface ClusterStatus {
  /** Who answered: a balancer (`shoal.admin.status`) or, with no balancer, the nodes' heartbeats. */
  source: 'balancer' | 'heartbeats';
  balancerId: string | null;
  strategy: string | null;
  nodes: NodeRow[];
  [k: string]: unknown;
}

const num = (v: unknown, d = 0): number => (typeof v === 'number' && Number.isFinite(v) ? v : d);

function poolRow(v: unknown): PoolRow {
  const p = (v && typeof v === 'object' ? v : {}) as Record<string, unknown>;
  return { ...p, total: num(p.total), idle: num(p.idle), active: num(p.active), waiting: num(p.waiting), creating: num(p.creating), target: num(p.target), min: num(p.min), max: num(p.max) };
}

/** A node entry from the balancer (or a heartbeat), with the fields the CLI relies on made safe. */
export function nodeRow(v: unknown): NodeRow {
  const n = (v && typeof v === 'object' ? v : {}) as Record<string, unknown>;
  const hb = (n.heartbeat && typeof n.heartbeat === 'object' ? n.heartbeat : {}) as Record<string, unknown>;
  let pools: Record<string, PoolRow> = {};
  const rawPools = n.pools !== undefined && !Array.isArray(n.pools) ? n.pools : hb.pools;
  if (rawPools && typeof rawPools === 'object' && !Array.isArray(rawPools)) {
    pools = Object.fromEntries(Object.entries(rawPools as Record<string, unknown>).map(([k, p]) => [k, poolRow(p)]));
  }
  const { heartbeat: _hb, ...rest } = n;
  return {
    ...rest,
    nodeId: String(n.nodeId ?? '?'),
    state: typeof n.state === 'string' ? n.state : 'alive',
    draining: n.draining === true,
    host: typeof n.host === 'string' ? n.host : '',
    pid: typeof n.pid === 'number' ? n.pid : null,
    inFlight: num(n.inFlight),
    weight: typeof n.weight === 'number' ? n.weight : null,
    pools,
  };
}

export function fromBalancer(reply: unknown): ClusterStatus {
  const r = (reply && typeof reply === 'object' ? reply : {}) as Record<string, unknown>;
  const nodes = Array.isArray(r.nodes) ? r.nodes.map(nodeRow) : [];
  // Code-point order, as the balancers page (a cursor is the last id of a page).
  nodes.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  return {
    ...r,
    source: 'balancer',
    balancerId: typeof r.balancerId === 'string' ? r.balancerId : null,
    strategy: typeof r.strategy === 'string' ? r.strategy : null,
    nodes,
  };
}

/** Listen to heartbeats for a little over one interval; the latest of each node. */
export async function collectHeartbeats(nc: NatsConnection, s: Subjects, waitMs = 1200): Promise<Heartbeat[]> {
  const latest = new Map<string, Heartbeat>();
  const start = Date.now();
  let until = start + waitMs;
  const sub = nc.subscribe(s.anyHeartbeat, {
    callback: (err, m) => {
      if (err) return;
      try {
        const hb = parseHeartbeat(m.data);
        latest.set(hb.nodeId, hb);
        // A node with a longer interval than we assumed: wait 1.2 of its intervals (at most 5 s).
        until = Math.max(until, start + Math.min(5000, hb.intervalMs * 1.2));
      } catch { /* not a heartbeat we understand: skip it */ }
    },
  });
  while (Date.now() < until) await new Promise((r) => setTimeout(r, Math.min(100, until - Date.now())));
  sub.unsubscribe();
  // Code-point order, as the balancers page (a cursor is the last id of a page).
  return [...latest.values()].sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
}

/** True for "no responders" from `call` (nobody subscribed to the subject). */
export function isNoResponders(err: unknown): boolean {
  return err instanceof ShoalError && err.code === ErrorCodes.UNAVAILABLE && err.details?.reason === 'no_responders';
}

/**
 * The cluster as a balancer sees it; with no balancer answering, the nodes'
 * own heartbeats (strategy unknown then). No balancer and no heartbeat means
 * no cluster: UnreachableError.
 */
/** Which nodes a status asks for (the balancer pages; see docs/protocol.md). */
export interface StatusQuery { pool?: string; node?: string; limit?: number; cursor?: string }

export async function fetchStatus(nc: NatsConnection, s: Subjects, timeoutMs: number, q: StatusQuery = {}): Promise<ClusterStatus> {
  let why: string;
  try {
    return fromBalancer(await call<unknown>(nc, s.adminStatus, { ...q }, timeoutMs));
  } catch (err) {
    if (!(err instanceof ShoalError) || err.code !== ErrorCodes.UNAVAILABLE) throw err;
    why = isNoResponders(err) ? 'no balancer answers' : 'no balancer answered in time';
  }
  const hbs = await collectHeartbeats(nc, s);
  if (hbs.length === 0) throw new UnreachableError(`${why} on ${s.adminStatus} and no node heartbeats on ${s.anyHeartbeat}; ${HINT}`);
  // The same filters and page as a balancer would apply (heartbeats come sorted by id).
  const matched = hbs.filter((h) => (q.node === undefined || h.nodeId === q.node) && (q.pool === undefined || Object.hasOwn(h.pools, q.pool)) && (q.cursor === undefined || h.nodeId > q.cursor));
  const limit = q.limit ?? 100;
  const nodes = matched.slice(0, limit);
  const next = matched.length > limit && nodes.length > 0 ? nodes.at(-1)!.nodeId : null;
  return { source: 'heartbeats', balancerId: null, strategy: null, note: `${why} on ${s.adminStatus}; nodes from their heartbeats`, nodes: nodes.map(nodeRow), page: { limit, returned: nodes.length, matched: matched.length, next } };
}

/** One row of the Claude cost table: a client's totals in one pool, over the nodes that answered. */
export interface ClientCostRow {
  pool: string;
  client: string;
  turns: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

/**
 * Tokens and USD by client name of the claude-cli pools: each node that has
 * one is asked for its status (`pools.<name>.driver.clients`), in parallel;
 * a node that does not answer in time is left out. An operator command, off
 * the lease path.
 */
export async function fetchClaudeCosts(nc: NatsConnection, s: Subjects, nodes: NodeRow[], timeoutMs: number): Promise<ClientCostRow[]> {
  const wanted = nodes.filter((n) => Object.values(n.pools).some((p) => p.kind === 'claude-cli'));
  const sums = new Map<string, ClientCostRow>();
  await Promise.all(wanted.map(async (n) => {
    let st: { pools?: Record<string, { kind?: string; driver?: { clients?: Record<string, Record<string, unknown>> } }> };
    try {
      st = await call(nc, s.nodeStatus(n.nodeId), {}, timeoutMs);
    } catch {
      return;
    }
    for (const [pool, p] of Object.entries(st.pools ?? {})) {
      if (p.kind !== 'claude-cli') continue;
      for (const [client, c] of Object.entries(p.driver?.clients ?? {})) {
        const key = `${pool}\u0000${client}`;
        const row = sums.get(key) ?? { pool, client, turns: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 };
        row.turns += num(c.turns);
        row.inputTokens += num(c.input_tokens);
        row.outputTokens += num(c.output_tokens);
        row.costUsd += num(c.cost_usd);
        sums.set(key, row);
      }
    }
  }));
  return [...sums.values()].sort((a, b) => a.pool.localeCompare(b.pool) || b.costUsd - a.costUsd);
}
