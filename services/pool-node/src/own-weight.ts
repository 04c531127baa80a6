import type { KvEntry, NatsConnection, QueuedIterator } from 'nats';
import { validators } from '@shoal/protocol';

/** Longest pause between two tries to watch the settings bucket (missing until a balancer creates it). */
const RETRY_MAX_MS = 10_000;

/**
 * The operator's weight for this node (`weight.<nodeId>` in the settings
 * bucket, set with `shoal weight`), watched, never read per request: the
 * SDK's direct try at a parked key skips the balancers, and with it the
 * weight they place by. A weight of 0 takes the node out of rotation for
 * that try too. Only the watch's latest value counts; a node that cannot
 * watch (no bucket yet, no permission) knows no weight and refuses nothing.
 */
export class OwnWeight {
  private weight: number | undefined;
  private watch: QueuedIterator<KvEntry> | undefined;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private refusedOnce = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly bucket: string,
    private readonly nodeId: string,
    private readonly log: { debug(m: string, f?: Record<string, unknown>): void; info(m: string, f?: Record<string, unknown>): void; warn(m: string, f?: Record<string, unknown>): void },
    /** The JetStream domain of the settings bucket (`jetstream.domain`), if any. */
    private readonly domain?: string,
  ) {}

  /** The operator's weight for this node, if one is set (it overrides the pools' configured `weight`, as in the balancers). */
  get value(): number | undefined {
    return this.weight;
  }

  start(): void {
    void this.run();
    void this.rewatchOnReconnect();
  }

  /**
   * A server restarted without its store (memory storage) comes back with a
   * new settings stream, which the consumer would follow from the old
   * stream's sequence, missing what is written there: watch it anew.
   */
  private async rewatchOnReconnect(): Promise<void> {
    for await (const st of this.nc.status()) {
      if (this.stopped) return;
      if (st.type === 'reconnect') this.watch?.stop();
    }
  }

  stop(): void {
    this.stopped = true;
    this.watch?.stop();
    clearTimeout(this.retry);
    this.wake?.();
  }

  private async run(): Promise<void> {
    let delay = 500;
    while (!this.stopped) {
      try {
        // Bind only: the bucket is the balancers' to create (and this role may not).
        const kv = await this.nc.jetstream({ timeout: 5000, ...(this.domain ? { domain: this.domain } : {}) }).views.kv(this.bucket, { bindOnly: true });
        if (this.stopped) return;
        // A watch anew (a new stream) that holds no weight for this node: none is set any more.
        let seen = false;
        this.watch = await kv.watch({ key: `weight.${this.nodeId}`, initializedFn: () => { if (!seen) this.set(undefined); } });
        // Stopped while the watch was being made: stop() could not see it.
        if (this.stopped) { this.watch.stop(); return; }
        delay = 500;
        for await (const e of this.watch) { seen = true; this.apply(e); }
      } catch (err) {
        const msg = (err as Error).message;
        // No bucket yet is normal until a balancer makes it; a refusal is a deployment to fix (credentials older than this role).
        if (/permission|authorization/i.test(msg) && !this.refusedOnce) {
          this.refusedOnce = true;
          this.log.warn('cannot watch the operator weight (permission refused): weight 0 will not stop direct acquires of parked keys here; regenerate the pool-node credentials (shoal creds)', { bucket: this.bucket, err: msg });
        } else {
          this.log.debug('operator weight not watched (yet)', { bucket: this.bucket, err: msg });
        }
      }
      if (this.stopped || this.nc.isClosed()) return;
      await new Promise<void>((r) => { this.wake = r; this.retry = setTimeout(r, delay); this.retry.unref?.(); });
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  private apply(e: KvEntry): void {
    let w: number | undefined;
    if (e.operation === 'PUT') {
      try {
        // Read as the balancers read it: a value they would refuse counts as no weight here too.
        w = validators.weight({ ...(JSON.parse(new TextDecoder().decode(e.value)) as object), nodeId: this.nodeId }, e.key).weight;
      } catch {
        w = undefined;
      }
    }
    this.set(w);
  }

  private set(w: number | undefined): void {
    if ((w === 0) !== (this.weight === 0)) this.log.info(w === 0 ? 'operator weight 0: direct acquires of parked keys are refused' : 'operator weight no longer 0', { weight: w ?? null });
    this.weight = w;
  }
}
