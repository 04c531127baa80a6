import type { ServerResponse } from 'node:http';
import { decode, encode, PROTOCOL_VERSION, subjects, type Heartbeat } from '@shoal/protocol';
import { call, type HttpHandler, type Logger, type NatsConnection, type Route, type Subscription } from '@shoal/runtime';
import type { Balancer, BalancerStatus } from './balancer.js';
import { STATUS_PAGE } from './status-page.js';

/**
 * The balancer's HTTP surface: the cluster-wide API in the session-pool
 * design's paths, the live status page at `/`, and its server-sent event
 * stream. Every replica serves the same view: it is built from the
 * heartbeats every replica hears, the health checker's verdicts and the
 * autoscaler's status (both optional: "not running" when absent).
 * Nothing here is on the acquire path.
 */

/** The health checker's verdict on a node (BRIEF contract; issue 9 publishes it). */
export interface Verdict {
  nodeId: string;
  healthy: boolean;
  at: number;
  since?: number;
  checkerId?: string;
  reason?: string;
  checks?: { type: string; ok: boolean; value?: number; limit?: number; message?: string }[];
  pools?: Record<string, { healthy: boolean; reason?: string }>;
}

interface PoolTotals {
  nodes: number;
  total: number;
  idle: number;
  active: number;
  creating: number;
  waiting: number;
  max: number;
  /** Acquires per second over all nodes (from their heartbeats). */
  requestRate: number;
  /** Acquire latency (ms), the nodes' EWMAs weighted by their request rates. */
  latencyMs: number;
}

export interface ClusterStatus extends Omit<BalancerStatus, 'nodes'> {
  at: number;
  nodes: BalancerStatus['nodes'];
  pools: Record<string, PoolTotals>;
  health: { running: boolean; verdicts: number };
  /** `status`: what `<prefix>.autoscaler.status` answered; `targets`: the `target.<pool>` keys of the settings bucket. */
  autoscaler: { running: boolean; status?: unknown; error?: string; at: number; targets: Record<string, unknown>; desired: Record<string, unknown> };
}

/** How often the page's feed pushes at most, and at least (state changes without a heartbeat: a silent node). */
const PUSH_MIN_MS = 250;
const PUSH_EVERY_MS = 1000;
/** Leases and autoscaler are asked for (NATS requests) only while someone watches, this often. */
const POLL_MS = 2000;
/** Open feeds per replica, and bytes queued for one slow reader, before it is refused or cut off. */
const MAX_CLIENTS = 100;
const MAX_QUEUED_BYTES = 1 << 20;
/** A verdict this old, for a node no longer listed, is forgotten. */
const VERDICT_TTL_MS = 60_000;

export class ClusterView {
  private readonly verdicts = new Map<string, Verdict>();
  private autoscaler: Omit<ClusterStatus['autoscaler'], 'targets' | 'desired'> = { running: false, at: 0 };
  /** Last `<prefix>.autoscaler.desired.<pool>` message per pool (desired pool-nodes, issue 8). */
  private readonly desired = new Map<string, unknown>();
  private desiredSub: Subscription | undefined;
  /** `target.<pool>` entries of the settings bucket (the autoscaler's, issue 8). */
  private readonly targets = new Map<string, unknown>();
  private readonly clients = new Set<ServerResponse>();
  private sub: Subscription | undefined;
  private pushTimer: NodeJS.Timeout | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private lastPush = 0;
  private readonly prefix: string;

  constructor(private readonly balancer: Balancer, private readonly nc: NatsConnection, prefix: string, private readonly log: Logger) {
    this.prefix = prefix;
  }

  start(): void {
    try {
      this.sub = this.nc.subscribe(`${this.prefix}.health.verdict.*`, {
        callback: (err, m) => {
          if (err) return;
          try {
            const v = decode(m.data) as unknown as Verdict;
            if (typeof v.nodeId === 'string' && typeof v.healthy === 'boolean') this.verdicts.set(v.nodeId, v);
          } catch { /* not a verdict we can read */ }
        },
      });
    } catch (err) {
      this.log.debug('health verdicts not available', { err: (err as Error).message });
    }
    try {
      this.desiredSub = this.nc.subscribe(`${this.prefix}.autoscaler.desired.*`, {
        callback: (err, m) => {
          if (err) return;
          const pool = m.subject.slice(`${this.prefix}.autoscaler.desired.`.length);
          this.desired.set(pool, readAny(m.data));
          this.soon();
        },
      });
    } catch (err) {
      this.log.debug('autoscaler announcements not available', { err: (err as Error).message });
    }
    // Fed by the heartbeats the balancer hears anyway: a change shows within a push period.
    this.balancer.onHeartbeatSeen = () => this.soon();
    // The settings bucket the balancer watches anyway: `health.<nodeId>` (the last verdict, so a
    // verdict made before this replica started is shown) and the autoscaler's `target.<pool>`.
    this.balancer.onForeignSetting = (key, value) => {
      if (key.startsWith('target.')) {
        if (value === undefined) this.targets.delete(key.slice(7));
        else this.targets.set(key.slice(7), value);
      } else if (key.startsWith('health.')) {
        const v = value as Verdict | undefined;
        const nodeId = key.slice(7);
        if (v === undefined) this.verdicts.delete(nodeId);
        else if (typeof v.healthy === 'boolean' && !((this.verdicts.get(nodeId)?.at ?? -Infinity) > (v.at ?? 0))) this.verdicts.set(nodeId, { ...v, nodeId });
      } else return;
      this.soon();
    };
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.desiredSub?.unsubscribe();
    clearTimeout(this.pushTimer);
    clearInterval(this.tickTimer);
    clearInterval(this.pollTimer);
    for (const res of this.clients) res.end();
    this.clients.clear();
  }

  status(now = Date.now()): ClusterStatus {
    const st = this.balancer.status(now);
    for (const [id, v] of this.verdicts) if (now - v.at > VERDICT_TTL_MS && !st.nodes.some((n) => n.nodeId === id)) this.verdicts.delete(id);
    const pools: Record<string, PoolTotals> = {};
    for (const n of st.nodes) {
      if (n.state === 'gone') continue;
      for (const [name, p] of Object.entries(n.pools)) {
        const t = (pools[name] ??= { nodes: 0, total: 0, idle: 0, active: 0, creating: 0, waiting: 0, max: 0, requestRate: 0, latencyMs: 0 });
        t.nodes++;
        t.total += p.total;
        t.idle += p.idle;
        t.active += p.active;
        t.creating += p.creating;
        t.waiting += p.waiting;
        t.max += p.max;
        t.latencyMs += p.latencyMs * p.requestRate;
        t.requestRate += p.requestRate;
      }
    }
    for (const t of Object.values(pools)) t.latencyMs = t.requestRate > 0 ? t.latencyMs / t.requestRate : 0;
    return {
      ...st,
      at: now,
      // Each node's verdict in force is the balancer's own (its HealthView, from the verdict subject and the bucket).
      nodes: st.nodes,
      pools,
      health: { running: this.verdicts.size > 0, verdicts: this.verdicts.size },
      autoscaler: { ...this.autoscaler, targets: Object.fromEntries(this.targets), desired: Object.fromEntries(this.desired) },
    };
  }

  /** Every resource of every node (asked in parallel, 1 s each); nodes that do not answer are listed in `missing`. */
  async sessions(pool?: string): Promise<{ at: number; sessions: Record<string, unknown>[]; leases: Record<string, unknown>[]; missing: string[] }> {
    const s = subjects(this.prefix);
    const ids = this.balancer.status().nodes.filter((n) => n.state !== 'gone').map((n) => n.nodeId);
    const replies = await Promise.allSettled(ids.map((id) => call<{ pools: Record<string, { resources?: Record<string, unknown>[]; leases?: Record<string, unknown>[] }> }>(this.nc, s.nodeStatus(id), { leases: true }, 1000)));
    const sessions: Record<string, unknown>[] = [];
    const leases: Record<string, unknown>[] = [];
    const missing: string[] = [];
    replies.forEach((r, i) => {
      const nodeId = ids[i]!;
      if (r.status !== 'fulfilled') { missing.push(nodeId); return; }
      for (const [name, p] of Object.entries(r.value.pools ?? {})) {
        if (pool && name !== pool) continue;
        for (const res of p.resources ?? []) sessions.push({ ...res, node: nodeId, pool: name });
        for (const l of p.leases ?? []) leases.push({ ...l, node: nodeId, pool: name });
      }
    });
    return { at: Date.now(), sessions, leases, missing };
  }

  private async pollAutoscaler(): Promise<void> {
    const subject = `${this.prefix}.autoscaler.status`;
    try {
      const m = await this.nc.request(subject, encode({ v: PROTOCOL_VERSION }), { timeout: 1000 });
      this.autoscaler = { running: true, status: readAny(m.data), at: Date.now() };
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      this.autoscaler = { running: false, at: Date.now(), error: /no responders|503/i.test(msg) ? 'not running' : msg };
    }
  }

  // ---- live feed (server-sent events) -------------------------------------

  private soon(): void {
    if (this.clients.size === 0 || this.pushTimer) return;
    const wait = Math.max(0, PUSH_MIN_MS - (Date.now() - this.lastPush));
    this.pushTimer = setTimeout(() => { this.pushTimer = undefined; this.push(); }, wait);
    this.pushTimer.unref?.();
  }

  private push(): void {
    this.lastPush = Date.now();
    this.send('status', this.status());
  }

  private send(event: string, data: unknown): void {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const res of this.clients) {
      // A reader that does not keep up is cut off (its EventSource reconnects) rather than buffered without bound.
      if (res.writableLength > MAX_QUEUED_BYTES) { this.clients.delete(res); res.destroy(); continue; }
      res.write(frame);
    }
  }

  private async poll(): Promise<void> {
    await this.pollAutoscaler();
    if (this.clients.size === 0) return;
    this.send('leases', await this.sessions());
  }

  private subscribe: HttpHandler = (req, res) => {
    if (this.clients.size >= MAX_CLIENTS) {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '5' });
      res.end(JSON.stringify({ error: `more than ${MAX_CLIENTS} live feeds open on this balancer` }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(`retry: 1000\n\n`);
    this.clients.add(res);
    res.write(`event: status\ndata: ${JSON.stringify(this.status())}\n\n`);
    if (this.clients.size === 1) {
      this.tickTimer = setInterval(() => this.soon(), PUSH_EVERY_MS);
      this.pollTimer = setInterval(() => { void this.poll(); }, POLL_MS);
      void this.poll();
    }
    req.on('close', () => {
      this.clients.delete(res);
      if (this.clients.size === 0) {
        clearInterval(this.tickTimer);
        clearInterval(this.pollTimer);
      }
    });
  };

  routes(vectorStoreStats: Route): Record<string, Route> {
    return {
      '/api/v1/session-pool/status': async () => {
        // Asked at most every POLL_MS; with no autoscaler running, "no responders" comes back at once.
        if (Date.now() - this.autoscaler.at > POLL_MS) await this.pollAutoscaler();
        return this.status();
      },
      '/api/v1/session-pool/sessions': async (q) => {
        const r = await this.sessions(q.get('pool') ?? undefined);
        return { at: r.at, sessions: r.sessions, missing: r.missing };
      },
      '/api/v1/session-pool/leases': async (q) => {
        const r = await this.sessions(q.get('pool') ?? undefined);
        return { at: r.at, leases: r.leases, missing: r.missing };
      },
      '/api/v1/balancer/status': () => this.balancer.status(),
      '/api/v1/metrics': () => undefined,
      '/vector-store/pool/stats': vectorStoreStats,
    };
  }

  handlers(): Record<string, HttpHandler> {
    return {
      '/': (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(STATUS_PAGE);
      },
      '/api/v1/session-pool/events': this.subscribe,
      // Browsers ask for it; a 404 would be a console error on every load.
      '/favicon.ico': (_req, res) => { res.writeHead(204); res.end(); },
    };
  }
}

/** A message from another service: a Shoal reply (msgpack, `data` unwrapped), else msgpack, else JSON, else text. */
function readAny(data: Uint8Array): unknown {
  try {
    const d = decode(data);
    return d.ok === true && 'data' in d ? d.data : d;
  } catch {
    const text = new TextDecoder().decode(data);
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
}

export type { Heartbeat };
