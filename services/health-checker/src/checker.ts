import type { HealthCheckConfig } from '@shoal/config';
import {
  encode, HEALTH_KEY_PREFIX, newId, parseHeartbeat, parseHealthVerdict, SETTINGS_BUCKET, subjects, validateHealthVerdict,
  type Heartbeat, type HealthVerdict, type ProbeReply, type Subjects,
} from '@shoal/protocol';
import { Actor, call, openBucket, type JetStreamSettings, type KV, type Logger, type Msg, type NatsConnection } from '@shoal/runtime';
import { CheckerMetrics } from './metrics.js';
import { differs, initialState, judge, probeInterval, shouldWrite, step, toVerdict, type NodeHealthState, type Observation } from './verdict.js';

export interface CheckerSettings {
  /** Defaults to a fresh ULID. */
  checkerId?: string;
  prefix: string;
  healthCheck: HealthCheckConfig;
  /** Missed heartbeats after which a node is gone for balancers; it is forgotten here no sooner. Default 5. */
  goneAfterIntervals?: number;
  /** How long a silent node is still probed before it is forgotten. Default 60 s. */
  forgetAfterMs?: number;
  /** Default SETTINGS_BUCKET. */
  settingsBucket?: string;
  /** Replicas, storage and domain of the settings bucket (the `jetstream` config section). */
  jetstream?: JetStreamSettings;
}

/** A verdict of another checker older than this many of the node's probe intervals is stale (its checker is gone). */
const STALE_INTERVALS = 3;
/**
 * A silent node is probed on for this long (and at least `goneAfter`
 * heartbeats), then forgotten and its stored verdict deleted. Long, because a
 * hung node (SIGSTOP, a blocked loop) is silent too and must be judged, and
 * judged again when it wakes up.
 */
const FORGET_AFTER_MS = 60_000;
/** Rounds of one node in flight at once, at most (a slow bucket must not pile them up). */
const MAX_OVERLAPPING_ROUNDS = 4;
/** How long to wait before trying the KV bucket again after it failed. */
const KV_RETRY_MS = 5000;

interface NodeEntry {
  hb: Heartbeat;
  lastSeenAt: number;
  state: NodeHealthState;
  timer: NodeJS.Timeout | undefined;
  /** The verdict in force as last seen (KV or subject), whoever wrote it. */
  published: HealthVerdict | undefined;
  /** Rounds fold in the order they end; a write in progress makes the next one wait its turn. */
  writing: Promise<void>;
  /** Rounds started and not finished: overlapping is how a hung node is judged in time, but not without bound. */
  rounds: number;
}

export interface CheckerStatus {
  checkerId: string;
  healthCheck: HealthCheckConfig;
  kv: boolean;
  nodes: { nodeId: string; intervalMs: number; healthy: boolean; since: number; reason?: string; published?: HealthVerdict }[];
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * The health-checker actor. Hears heartbeats to know the nodes, probes each on
 * its own timer (ping and probe, in parallel, each within `timeout`), folds
 * the results into the node's state with the pure functions of verdict.ts,
 * and writes the verdict to the settings bucket (`health.<nodeId>`, CAS) then
 * publishes it on `<prefix>.health.verdict.<nodeId>`: on every change, and
 * every round while unhealthy (which keeps the verdict fresh for replicas).
 */
export class HealthChecker extends Actor {
  readonly checkerId: string;
  readonly metrics: CheckerMetrics;
  private readonly s: Subjects;
  private readonly nodes = new Map<string, NodeEntry>();
  /** Verdicts heard before the node's first heartbeat (KV at start). */
  private readonly early = new Map<string, HealthVerdict>();
  private kv: KV | undefined;
  private kvFailedAt = 0;
  private stopping = false;

  constructor(nc: NatsConnection, log: Logger, private readonly cfg: CheckerSettings) {
    const checkerId = cfg.checkerId ?? newId();
    super(nc, log.child({ checker: checkerId }));
    this.checkerId = checkerId;
    this.s = subjects(cfg.prefix);
    this.metrics = new CheckerMetrics(checkerId, () => {
      let healthy = 0;
      for (const n of this.nodes.values()) if (n.state.healthy) healthy++;
      return { healthy, unhealthy: this.nodes.size - healthy };
    });
  }

  private get bucket(): string {
    return this.cfg.settingsBucket ?? SETTINGS_BUCKET;
  }

  async start(): Promise<void> {
    this.listen(this.s.anyHeartbeat, (m) => this.onHeartbeat(m));
    this.listen(this.s.anyHealthVerdict, (m) => this.onVerdict(m));
    // NATS service discovery ($SRV.PING/INFO/STATS), as every Shoal process; SHOAL_MICRO=0 turns it off.
    if (process.env.SHOAL_MICRO !== '0') {
      await this.registerMicro({
        name: 'shoal-health-checker',
        description: 'Shoal health-checker: probes nodes, publishes verdicts',
        metadata: { checkerId: this.checkerId, prefix: this.s.prefix, verdicts: this.s.anyHealthVerdict },
      });
    }
    await this.flushed();
    await this.readStored();
    this.log.info('health-checker ready', { enabled: this.cfg.healthCheck.enabled, checks: this.cfg.healthCheck.checks.map((c) => c.type) });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const n of this.nodes.values()) clearTimeout(n.timer);
    await this.unlisten();
  }

  // ---- observe -------------------------------------------------------------

  private onHeartbeat(m: Msg): void {
    let hb: Heartbeat;
    try {
      hb = parseHeartbeat(m.data);
    } catch {
      return;
    }
    const now = Date.now();
    const known = this.nodes.get(hb.nodeId);
    if (known) {
      // A restarted process under the same id is judged afresh.
      if (hb.startedAt > known.hb.startedAt) known.state = initialState(now);
      if (hb.startedAt >= known.hb.startedAt) { known.hb = hb; known.lastSeenAt = now; }
      return;
    }
    if (!this.cfg.healthCheck.enabled) return;
    const entry: NodeEntry = { hb, lastSeenAt: now, state: initialState(now), timer: undefined, published: this.early.get(hb.nodeId), writing: Promise.resolve(), rounds: 0 };
    this.early.delete(hb.nodeId);
    this.nodes.set(hb.nodeId, entry);
    this.log.info('probing node', { nodeId: hb.nodeId, intervalMs: this.intervalOf(entry) });
    this.schedule(hb.nodeId, entry);
  }

  private onVerdict(m: Msg): void {
    let v: HealthVerdict;
    try {
      v = parseHealthVerdict(m.data);
    } catch {
      return;
    }
    this.seen(v);
  }

  /** Remember the verdict in force for a node (the newest by `at`). */
  private seen(v: HealthVerdict): void {
    const n = this.nodes.get(v.nodeId);
    if (!n) {
      const e = this.early.get(v.nodeId);
      if (!e || e.at <= v.at) this.early.set(v.nodeId, v);
      return;
    }
    if (!n.published || n.published.at <= v.at) n.published = v;
  }

  /** The verdicts already stored: a restarted checker continues from them rather than from nothing. */
  private async readStored(): Promise<void> {
    const kv = await this.openKv();
    if (!kv) return;
    try {
      const keys: string[] = [];
      for await (const k of await kv.keys(`${HEALTH_KEY_PREFIX}>`)) keys.push(k);
      for (const k of keys) {
        const e = await kv.get(k);
        const v = e && e.operation === 'PUT' ? readStoredVerdict(e.value) : undefined;
        if (v) this.seen(v);
      }
    } catch (err) {
      this.log.warn('could not read stored verdicts', { bucket: this.bucket, err: (err as Error).message });
    }
  }

  private intervalOf(n: NodeEntry): number {
    return probeInterval(this.cfg.healthCheck.intervalMs, Object.values(n.hb.pools).map((p) => p.healthCheckIntervalMs));
  }

  // ---- decide and act --------------------------------------------------------

  /**
   * While a node is healthy, rounds start at a fixed rate (one per interval),
   * not one after the other: a hung node's probes time out in parallel, so it
   * is judged within `interval × failure_threshold + timeout` of hanging.
   * While it is unhealthy, one round at a time: answers to probes that piled
   * up while it hung must not count as that many good rounds at once.
   */
  private schedule(nodeId: string, n: NodeEntry): void {
    if (this.stopping) return;
    n.timer = setTimeout(() => {
      if (this.nodes.get(nodeId) !== n) return;
      const silent = Date.now() - n.lastSeenAt;
      if (silent >= Math.max((this.cfg.goneAfterIntervals ?? 5) * n.hb.intervalMs, this.cfg.forgetAfterMs ?? FORGET_AFTER_MS)) {
        this.nodes.delete(nodeId);
        this.log.info('node silent too long; no longer probed', { nodeId, silentMs: silent });
        void this.forget(nodeId, n);
        return;
      }
      this.schedule(nodeId, n);
      if (n.rounds >= (n.state.healthy ? MAX_OVERLAPPING_ROUNDS : 1)) return;
      n.rounds++;
      void this.round(nodeId, n)
        .catch((err) => this.log.error('health round failed', { nodeId, err: (err as Error).stack }))
        .finally(() => { n.rounds--; });
    }, this.intervalOf(n));
    n.timer.unref?.();
  }

  /** One round: observe (ping, probe), decide (pure), act (write and publish when needed). */
  private async round(nodeId: string, n: NodeEntry): Promise<void> {
    const hc = this.cfg.healthCheck;
    const startedAt = Date.now();
    const obs = await this.observe(nodeId, hc);
    const results = judge(hc.checks, obs, hc.timeoutMs);
    for (const c of results.checks) this.metrics.check(c.type, c.ok);
    for (const c of Object.values(results.pools)) this.metrics.check(c.type, c.ok);
    // Fold and write in order: a round that ends while the previous one is still writing waits for it.
    const prev = n.writing;
    let release!: () => void;
    n.writing = new Promise<void>((r) => { release = r; });
    await prev;
    try {
      if (this.nodes.get(nodeId) !== n) return;
      // Sent before the node was judged unhealthy: it says nothing about a recovery.
      if (!n.state.healthy && startedAt < n.state.since) return;
      const now = Date.now();
      const before = n.state;
      n.state = step(n.state, results, { failureThreshold: hc.failureThreshold, recoveryThreshold: hc.recoveryThreshold }, now);
      if (before.healthy !== n.state.healthy) {
        const v = toVerdict(n.state, nodeId, this.checkerId, now);
        this.log[n.state.healthy ? 'info' : 'warn']('node health changed', { nodeId, healthy: n.state.healthy, reason: v.reason });
      }
      const unhealthyPool = Object.values(n.state.pools).some((p) => p.failing);
      if (!n.state.healthy || unhealthyPool || differs(n.state, n.published)) await this.write(nodeId, n, now);
    } finally {
      release();
    }
  }

  private async observe(nodeId: string, hc: HealthCheckConfig): Promise<Observation> {
    const types = new Set(hc.checks.map((c) => c.type));
    const timed = async <T>(subject: string, what: 'ping' | 'probe') => {
      const t0 = performance.now();
      try {
        const reply = await call<T>(this.nc, subject, {}, hc.timeoutMs);
        const ms = performance.now() - t0;
        this.metrics.roundTrip(what, ms);
        return { ok: true as const, ms, reply };
      } catch (err) {
        return { ok: false as const, error: (err as Error).message };
      }
    };
    // The probe is sent every round whatever the checks: it also carries each pool's backend health.
    const [ping, probe] = await Promise.all([
      types.has('ping') ? timed<unknown>(this.s.nodePing(nodeId), 'ping') : undefined,
      timed<ProbeReply>(this.s.nodeProbe(nodeId), 'probe'),
    ]);
    return {
      ...(ping ? { ping: ping.ok ? { ok: true, ms: ping.ms } : ping } : {}),
      probe,
    };
  }

  /**
   * Write the verdict (CAS on the stored one, by the rule of `shouldWrite`),
   * then publish it. Without the bucket (no JetStream) the verdict is only
   * published: balancers hear it, a restarted one does not.
   */
  private async write(nodeId: string, n: NodeEntry, now: number): Promise<void> {
    const mine = toVerdict(n.state, nodeId, this.checkerId, now);
    const staleMs = STALE_INTERVALS * this.intervalOf(n) + this.cfg.healthCheck.timeoutMs;
    const kv = await this.openKv();
    if (kv) {
      const key = HEALTH_KEY_PREFIX + nodeId;
      let written = false;
      for (let attempt = 0; attempt < 2 && !written; attempt++) {
        try {
          const e = await kv.get(key);
          const stored = e && e.operation === 'PUT' ? readStoredVerdict(e.value) : undefined;
          if (!shouldWrite(mine, stored, now, staleMs)) {
            if (stored) this.seen(stored);
            return;
          }
          const data = enc.encode(JSON.stringify(mine));
          if (e) await kv.update(key, data, e.revision);
          else await kv.create(key, data);
          written = true;
        } catch (err) {
          // Another checker wrote in between (CAS): read again and decide again, once.
          if (attempt === 1) {
            this.log.debug('verdict not written', { nodeId, err: (err as Error).message });
            if (isKvDown(err)) this.dropKv();
            else return;
          }
        }
      }
    }
    this.seen(mine);
    this.metrics.verdict(mine.healthy);
    try {
      this.nc.publish(this.s.healthVerdict(nodeId), encode(mine));
    } catch (err) {
      this.log.debug('verdict not published', { nodeId, err: (err as Error).message });
    }
  }

  /** Delete a forgotten node's stored verdict (if ours or stale), so that ids of past processes do not pile up. */
  private async forget(nodeId: string, n: NodeEntry): Promise<void> {
    const kv = await this.openKv();
    if (!kv) return;
    const key = HEALTH_KEY_PREFIX + nodeId;
    try {
      const e = await kv.get(key);
      const stored = e && e.operation === 'PUT' ? readStoredVerdict(e.value) : undefined;
      if (!e || !stored) return;
      const staleMs = STALE_INTERVALS * this.intervalOf(n) + this.cfg.healthCheck.timeoutMs;
      if (stored.checkerId !== this.checkerId && Date.now() - stored.at < staleMs) return;
      await kv.delete(key, { previousSeq: e.revision });
    } catch (err) {
      this.log.debug('stored verdict not deleted', { nodeId, err: (err as Error).message });
    }
  }

  private async openKv(): Promise<KV | undefined> {
    if (this.kv) return this.kv;
    if (Date.now() - this.kvFailedAt < KV_RETRY_MS) return undefined;
    try {
      this.kv = await openBucket(this.nc, this.bucket, { ...this.cfg.jetstream, timeoutMs: 2000, log: this.log });
      return this.kv;
    } catch (err) {
      this.kvFailedAt = Date.now();
      this.log.warn('settings bucket unavailable; verdicts are only published', { bucket: this.bucket, err: (err as Error).message });
      return undefined;
    }
  }

  private dropKv(): void {
    this.kv = undefined;
    this.kvFailedAt = Date.now();
  }

  status(): CheckerStatus {
    return {
      checkerId: this.checkerId,
      healthCheck: this.cfg.healthCheck,
      kv: this.kv !== undefined,
      nodes: [...this.nodes].map(([nodeId, n]) => {
        const v = toVerdict(n.state, nodeId, this.checkerId, Date.now());
        return { nodeId, intervalMs: this.intervalOf(n), healthy: n.state.healthy, since: n.state.since, ...(v.reason ? { reason: v.reason } : {}), ...(n.published ? { published: n.published } : {}) };
      }),
    };
  }
}

function readStoredVerdict(value: Uint8Array): HealthVerdict | undefined {
  try {
    return validateHealthVerdict(JSON.parse(dec.decode(value)));
  } catch {
    return undefined;
  }
}

/** JetStream gone (not a CAS conflict): stop using the handle, reopen later. */
function isKvDown(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  return e?.code === '503' || /no responders|stream not found|timeout/i.test(String(e?.message ?? ''));
}
