import { ErrorCodes, isToken, ShoalError, validators, type StrategyRequest } from '@shoal/protocol';
import type { KV, Logger, NatsConnection } from '@shoal/runtime';

/** What an operator set at runtime; `undefined` means "back to the config file's value". */
export interface SettingsListener {
  strategy(value: StrategyRequest | undefined, revision: number): void;
  weight(nodeId: string, weight: number | undefined, revision: number): void;
}

export const STRATEGY_KEY = 'strategy';
export const WEIGHT_KEY_PREFIX = 'weight.';

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Operator settings in a JetStream KV bucket (history 1), values as JSON so
 * `nats kv get shoal_settings strategy` is readable. Every replica watches the
 * whole bucket, initial values included: the replica that wrote a value and
 * all the others apply the same entry, and a restarted replica reads them
 * before it joins the queue group.
 *
 * Each key is applied at most once per revision, so the writer can apply its
 * own write at once (its reply then reflects it) and skip the echo from the watch.
 */
export class SettingsStore {
  private kv: KV | undefined;
  private opening: Promise<KV> | undefined;
  private watcher: { stop(): void } | undefined;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly applied = new Map<string, number>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly bucket: string,
    private readonly listener: SettingsListener,
    private readonly timeoutMs = 5000,
  ) {}

  get ready(): boolean {
    return this.watcher !== undefined;
  }

  /**
   * Open (creating if missing) the bucket, start the watch, and resolve once
   * the initial values are applied. Resolves false (and retries in the
   * background) when JetStream is not reachable: the balancer then serves with
   * the config file's settings rather than not at all.
   */
  async start(): Promise<boolean> {
    try {
      await this.watch();
      return true;
    } catch (err) {
      this.log.warn('settings bucket unavailable; using config settings until it is', { bucket: this.bucket, err: (err as Error).message });
      this.scheduleRetry();
      return false;
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.watcher?.stop();
    this.watcher = undefined;
  }

  async putStrategy(value: StrategyRequest): Promise<number> {
    const rev = await this.put(STRATEGY_KEY, value);
    this.apply(STRATEGY_KEY, value, rev);
    return rev;
  }

  async putWeight(nodeId: string, weight: number): Promise<number> {
    if (!isToken(nodeId)) throw new ShoalError(ErrorCodes.BAD_REQUEST, `field nodeId: expected a node id (1-64 of A-Z a-z 0-9 _ -), got ${JSON.stringify(nodeId).slice(0, 80)}`, { details: { field: 'nodeId' } });
    const key = WEIGHT_KEY_PREFIX + nodeId;
    const rev = await this.put(key, { weight });
    this.apply(key, { weight }, rev);
    return rev;
  }

  private async put(key: string, value: unknown): Promise<number> {
    let kv: KV;
    try {
      kv = await this.open();
    } catch (err) {
      throw new ShoalError(ErrorCodes.UNAVAILABLE, `settings bucket ${this.bucket} is not available (JetStream enabled?): ${(err as Error).message}`);
    }
    try {
      return await kv.put(key, enc.encode(JSON.stringify(value)));
    } catch (err) {
      throw new ShoalError(ErrorCodes.UNAVAILABLE, `writing ${key} to ${this.bucket} failed: ${(err as Error).message}`);
    }
  }

  private open(): Promise<KV> {
    if (this.kv) return Promise.resolve(this.kv);
    if (!this.opening) {
      this.opening = openBucket(this.nc, this.bucket, this.timeoutMs).then(
        (kv) => { this.kv = kv; return kv; },
        (err) => { this.opening = undefined; throw err; },
      );
    }
    return this.opening;
  }

  private async watch(): Promise<void> {
    const kv = await this.open();
    let initialized!: () => void;
    const done = new Promise<void>((resolve) => { initialized = resolve; });
    const it = await kv.watch({ key: '>', initializedFn: () => initialized() });
    this.watcher = it;
    (async () => {
      for await (const e of it) {
        const deleted = e.operation === 'DEL' || e.operation === 'PURGE';
        let value: unknown;
        if (!deleted) {
          try {
            value = JSON.parse(dec.decode(e.value));
          } catch {
            this.log.warn('ignoring a setting that is not JSON', { key: e.key, revision: e.revision });
            continue;
          }
        }
        this.apply(e.key, value, e.revision);
      }
    })().then(
      () => this.rewatch('watch ended'),
      (err) => this.rewatch((err as Error).message),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`initial settings not read within ${this.timeoutMs} ms`)), this.timeoutMs); });
    try {
      await Promise.race([done, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private rewatch(why: string): void {
    if (this.stopped) return;
    this.watcher = undefined;
    this.log.warn('settings watch stopped; restarting', { why });
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (this.stopped || this.watcher) return;
      this.watch().then(
        () => this.log.info('settings bucket watched', { bucket: this.bucket }),
        () => { this.watcher?.stop(); this.watcher = undefined; this.scheduleRetry(); },
      );
    }, 2000);
    this.retryTimer.unref?.();
  }

  /** Apply one entry unless this revision (or a later one) of the key was applied already. */
  private apply(key: string, value: unknown, revision: number): void {
    if ((this.applied.get(key) ?? 0) >= revision) return;
    this.applied.set(key, revision);
    try {
      if (key === STRATEGY_KEY) {
        this.listener.strategy(value === undefined ? undefined : validators.strategy(value, STRATEGY_KEY), revision);
      } else if (key.startsWith(WEIGHT_KEY_PREFIX)) {
        const nodeId = key.slice(WEIGHT_KEY_PREFIX.length);
        const w = value === undefined ? undefined : validators.weight({ nodeId, ...(value as object) }, key).weight;
        this.listener.weight(nodeId, w, revision);
      }
      // Other keys belong to other services (e.g. the autoscaler's targets).
    } catch (err) {
      this.log.warn('ignoring an invalid setting', { key, revision, err: (err as Error).message });
    }
  }
}

/**
 * Open the bucket, creating it (history 1) if it does not exist. nats.js binds
 * to an existing stream as it is; two replicas creating it at the same moment
 * make one of them fail once, so try twice.
 */
async function openBucket(nc: NatsConnection, bucket: string, timeout: number): Promise<KV> {
  const views = nc.jetstream({ timeout }).views;
  try {
    return await views.kv(bucket, { history: 1, timeout });
  } catch {
    return views.kv(bucket, { history: 1, timeout });
  }
}
