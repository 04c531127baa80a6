import type { KvEntry, NatsConnection, QueuedIterator } from 'nats';

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

  constructor(
    private readonly nc: NatsConnection,
    private readonly bucket: string,
    private readonly nodeId: string,
    private readonly log: { debug(m: string, f?: Record<string, unknown>): void; info(m: string, f?: Record<string, unknown>): void },
    /** The JetStream domain of the settings bucket (`jetstream.domain`), if any. */
    private readonly domain?: string,
  ) {}

  /** The operator's weight for this node, if one is set (it overrides the pools' configured `weight`, as in the balancers). */
  get value(): number | undefined {
    return this.weight;
  }

  start(): void {
    void this.run();
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
        this.watch = await kv.watch({ key: `weight.${this.nodeId}` });
        delay = 500;
        for await (const e of this.watch) this.apply(e);
      } catch (err) {
        this.log.debug('operator weight not watched (yet)', { bucket: this.bucket, err: (err as Error).message });
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
        const v = JSON.parse(new TextDecoder().decode(e.value)) as { weight?: unknown };
        w = typeof v.weight === 'number' && Number.isFinite(v.weight) ? v.weight : undefined;
      } catch {
        w = undefined;
      }
    }
    if ((w === 0) !== (this.weight === 0)) this.log.info(w === 0 ? 'operator weight 0: direct acquires of parked keys are refused' : 'operator weight no longer 0', { weight: w ?? null });
    this.weight = w;
  }
}
