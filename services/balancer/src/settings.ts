import { ErrorCodes, HEALTH_KEY_PREFIX, isToken, ShoalError, validateHealthVerdict, validators, type HealthVerdict, type StrategyRequest } from '@shoal/protocol';
import { isJetStreamUnavailable, isStreamNotFound, openBucket, type BucketOptions, type KV, type Logger, type NatsConnection } from '@shoal/runtime';

/** Who set a runtime setting and when (epoch ms), stored in the entry's JSON next to the value. */
export interface SettingMeta {
  by?: string;
  at?: number;
}

/** What an operator set at runtime; `undefined` means "back to the config file's value". */
export interface SettingsListener {
  strategy(value: StrategyRequest | undefined, revision: number, meta?: SettingMeta): void;
  weight(nodeId: string, weight: number | undefined, revision: number, meta?: SettingMeta): void;
  /** A health-checker's verdict about a node (`health.<nodeId>`); undefined when deleted. */
  health?(nodeId: string, verdict: HealthVerdict | undefined, revision: number): void;
  /** Keys other services own (`target.*`, `health.*`, ...): passed on as read, never judged (the status page shows them). */
  other?(key: string, value: unknown, revision: number): void;
}

/** The keys this store owns: `shoal settings reset` deletes only these. */
export function ownedKey(key: string): boolean {
  return key === STRATEGY_KEY || key.startsWith(WEIGHT_KEY_PREFIX);
}

function metaOf(value: unknown): SettingMeta {
  const v = (value ?? {}) as { by?: unknown; at?: unknown };
  return {
    ...(typeof v.by === 'string' ? { by: v.by.slice(0, 128) } : {}),
    ...(typeof v.at === 'number' && Number.isFinite(v.at) ? { at: v.at } : {}),
  };
}

export const STRATEGY_KEY = 'strategy';
export const WEIGHT_KEY_PREFIX = 'weight.';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What was last applied for a key, and by which watch. */
interface Applied {
  revision: number;
  /** The watch generation it was applied under (writes apply under the current one). */
  generation: number;
  /** The entry's JSON as stored; undefined for a delete (the config file's value is in force). */
  raw: string | undefined;
}

type Watch = Awaited<ReturnType<KV['watch']>>;

export interface SettingsStoreOptions {
  /**
   * How long a write (all its retries) and the initial read of one watch may
   * take. Default 5000 ms. One JetStream request gets at most 2000 ms of it,
   * so that a request lost with a server is retried on another in time.
   */
  timeoutMs?: number;
  /**
   * How long `start` keeps trying to read the stored settings before the
   * balancer serves with the config file's (JetStream answering but not
   * ready, e.g. a cluster electing a leader). Not waited for when no
   * JetStream answers at all. Default 10000 ms.
   */
  startWaitMs?: number;
  /** Longest pause between watch retries (they start at 100 ms and double). Default 1000 ms. */
  retryMaxMs?: number;
  /** Replicas, storage, domain of the bucket (see @shoal/runtime openBucket). */
  bucket?: Omit<BucketOptions, 'timeoutMs' | 'log' | 'history'>;
  /**
   * How often to check that the watched stream is still the bucket's stream:
   * advisories may not be permitted, and a stream's delete advisory can be
   * lost (seen with nats-server 2.9). Default 5000 ms; 0 turns it off.
   */
  checkMs?: number;
  /** Restart the watch on the stream's JetStream advisories. Default true. */
  advisories?: boolean;
}

/**
 * Operator settings in a JetStream KV bucket (history 1), values as JSON so
 * `nats kv get shoal_settings strategy` is readable. Every replica watches the
 * whole bucket, initial values included: the replica that wrote a value and
 * all the others apply the same entry, and a restarted replica reads them
 * before it joins the queue group.
 *
 * Within one watch each key is applied at most once per revision, so the
 * writer can apply its own write at once (its reply then reflects it) and skip
 * the echo from the watch. A new watch starts from scratch: its initial values
 * are authoritative, whatever revisions the previous one saw. That matters
 * when the bucket is lost (deleted, or NATS restarted with an ephemeral
 * store): the new bucket counts revisions from 1 again. The store restarts
 * its watch when the bucket's stream is deleted or replaced (JetStream
 * advisories) and after every reconnect, checks every `checkMs` that the
 * stream it watches is still the bucket's stream (when advisories are not
 * permitted), and creates the bucket again when a write or a watch finds it gone.
 */
export class SettingsStore {
  private kv: KV | undefined;
  private opening: Promise<KV> | undefined;
  private watcher: { stop(): void } | undefined;
  /** Bumped by every watch start; entries and callbacks of an older watch are ignored. */
  private generation = 0;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  /** Pause before the next watch retry; back to the shortest after a watch starts. */
  private retryDelay = RETRY_MIN_MS;
  /** Creation time of the stream the current watch reads. */
  private streamCreated: string | undefined;
  /** The stream's leader when the current watch started (clustered JetStream only). */
  private streamLeader: string | undefined;
  /** The highest stream sequence the current watch delivered. */
  private seenSeq = 0;
  /** At the previous check: the watch lagged the stream, and had delivered up to this sequence. */
  private lagging: { seen: number } | undefined;
  /** Checks run every second until then (after a reconnect or a leader change), else every `checkMs`. */
  private fastChecksUntil = 0;
  private advisories: { unsubscribe(): void } | undefined;
  private statusEvents: AsyncIterable<unknown> | undefined;
  private readonly applied = new Map<string, Applied>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly bucket: string,
    private readonly listener: SettingsListener,
    private readonly opts: SettingsStoreOptions = {},
  ) {}

  private get timeoutMs(): number {
    return this.opts.timeoutMs ?? 5000;
  }

  /** One JetStream request's timeout. */
  private get requestMs(): number {
    return Math.min(2000, this.timeoutMs);
  }

  get ready(): boolean {
    return this.watcher !== undefined;
  }

  /**
   * Open (creating if missing) the bucket, start the watch, and resolve once
   * the initial values are applied, so that a restarted replica serves the
   * stored settings from its first request. While JetStream answers but
   * cannot serve the bucket yet (a leader being elected), keep trying for
   * `startWaitMs`. Resolves false (and retries in the background) after
   * that, or at once when no JetStream answers at all: the balancer then
   * serves with the config file's settings rather than not at all.
   */
  async start(): Promise<boolean> {
    this.follow();
    const until = Date.now() + (this.opts.startWaitMs ?? 10_000);
    let delay = RETRY_MIN_MS;
    for (;;) {
      try {
        await this.watch();
        return true;
      } catch (err) {
        const absent = (err as { code?: unknown }).code === '503';
        if (this.stopped || absent || Date.now() + delay >= until) {
          this.log.warn('settings bucket unavailable; using config settings until it is', { bucket: this.bucket, err: (err as Error).message });
          this.scheduleRetry();
          return false;
        }
        this.log.info('settings bucket not readable yet; retrying', { bucket: this.bucket, err: (err as Error).message });
        await sleep(delay);
        delay = Math.min(delay * 2, this.retryMaxMs);
      }
    }
  }

  private get retryMaxMs(): number {
    return this.opts.retryMaxMs ?? 1000;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.restartTimer);
    clearTimeout(this.checkTimer);
    this.watcher?.stop();
    this.watcher = undefined;
    this.advisories?.unsubscribe();
    this.advisories = undefined;
    (this.statusEvents as { stop?(): void } | undefined)?.stop?.();
    this.statusEvents = undefined;
  }

  async putStrategy(value: StrategyRequest, by?: string): Promise<number> {
    const entry = { ...value, ...(by ? { by } : {}), at: Date.now() };
    const raw = JSON.stringify(entry);
    const rev = await this.put(STRATEGY_KEY, raw);
    this.apply(STRATEGY_KEY, entry, raw, rev);
    return rev;
  }

  async putWeight(nodeId: string, weight: number, by?: string): Promise<number> {
    if (!isToken(nodeId)) throw new ShoalError(ErrorCodes.BAD_REQUEST, `field nodeId: expected a node id (1-64 of A-Z a-z 0-9 _ -), got ${JSON.stringify(nodeId).slice(0, 80)}`, { details: { field: 'nodeId' } });
    const key = WEIGHT_KEY_PREFIX + nodeId;
    const entry = { weight, ...(by ? { by } : {}), at: Date.now() };
    const raw = JSON.stringify(entry);
    const rev = await this.put(key, raw);
    this.apply(key, entry, raw, rev);
    return rev;
  }

  /** The runtime settings in force (owned keys with a value), e.g. `['strategy', 'weight.node-1']`. */
  keys(): string[] {
    return [...this.applied].filter(([k, rec]) => rec.raw !== undefined && ownedKey(k)).map(([k]) => k).sort();
  }

  /**
   * Delete runtime settings so that the config's values are in force again:
   * `key`, or every key this store owns. The deletes reach every replica
   * through the watch (this one applies them at once). Returns the keys deleted.
   */
  async reset(key?: string): Promise<string[]> {
    if (key !== undefined && !ownedKey(key)) {
      throw new ShoalError(ErrorCodes.BAD_REQUEST, `field key: ${JSON.stringify(key).slice(0, 80)} is not a runtime setting (strategy, weight.<node>)`, { details: { field: 'key' } });
    }
    // What is set comes from the watch: without it this replica cannot tell, and "nothing to reset" would be a lie.
    if (!this.ready) throw new ShoalError(ErrorCodes.UNAVAILABLE, `the settings bucket ${this.bucket} is not being watched yet; retry`);
    const keys = key !== undefined ? (this.keys().includes(key) ? [key] : []) : this.keys();
    if (keys.length === 0) return [];
    const kv = await this.open();
    for (const k of keys) {
      try {
        await kv.delete(k);
      } catch (err) {
        throw new ShoalError(ErrorCodes.UNAVAILABLE, `deleting ${k} from ${this.bucket} failed: ${(err as Error).message}`);
      }
      const rec = this.applied.get(k);
      // The delete's revision is not returned; the watch's echo has a higher one than the value deleted.
      if (rec !== undefined && rec.generation === this.generation) this.applied.set(k, { ...rec, raw: undefined });
      this.deliver(k, undefined, rec?.revision ?? 0);
    }
    return keys;
  }

  /**
   * Write, retrying within `timeoutMs` while JetStream cannot take it (a
   * server or the stream's leader lost: no responders or no answer). The
   * bucket is created again only when JetStream says its stream does not
   * exist, never on silence alone.
   */
  private async put(key: string, raw: string): Promise<number> {
    const data = enc.encode(raw);
    const deadline = Date.now() + this.timeoutMs;
    let delay = RETRY_MIN_MS;
    let recreated = false;
    let rev: number;
    for (;;) {
      let kv: KV | undefined;
      try {
        kv = await this.open();
        rev = await kv.put(key, data);
        break;
      } catch (err) {
        if (kv !== undefined && !recreated && await this.gone(err)) {
          // The bucket was deleted (or NATS restarted with an ephemeral store): create it again and write there.
          this.log.warn('settings bucket is gone; creating it again', { bucket: this.bucket, key });
          this.forget(kv);
          recreated = true;
          continue;
        }
        // No responders on the JetStream API itself: no JetStream here at all, waiting will not help.
        const noJetStream = kv === undefined && (err as { code?: unknown }).code === '503';
        if (noJetStream || !isJetStreamUnavailable(err) || Date.now() + delay >= deadline) {
          const what = kv === undefined ? `settings bucket ${this.bucket} is not available (JetStream enabled?)` : `writing ${key} to ${this.bucket} failed`;
          throw new ShoalError(ErrorCodes.UNAVAILABLE, `${what}: ${(err as Error).message}`, noJetStream ? { details: { reason: 'no_jetstream' } } : {});
        }
        this.log.debug('settings write not taken; retrying', { bucket: this.bucket, key, err: (err as Error).message });
        await sleep(delay);
        delay = Math.min(delay * 2, this.retryMaxMs);
      }
    }
    // Revisions only grow within one stream. The watch may have applied this
    // very write already (its echo can come before the put's reply); a lower
    // revision, or this one with another value, says the bucket was created
    // anew under the watch: follow the new bucket first, or the write would
    // be skipped as old. (A later revision of the key may also be another
    // replica's write that came first: then the restart only costs a read.)
    const rec = this.applied.get(key);
    if (rec !== undefined && rec.generation === this.generation && (rec.revision > rev || (rec.revision === rev && rec.raw !== raw))) {
      await this.restartNow('settings bucket was created anew');
    }
    return rev;
  }

  /**
   * Is the bucket's stream gone? A put to a missing stream has no responders,
   * as it has while the stream's leader is being elected: only JetStream's
   * own "stream not found" tells them apart.
   */
  private async gone(err: unknown): Promise<boolean> {
    if (isStreamNotFound(err)) return true;
    if ((err as { code?: unknown }).code !== '503') return false;
    try {
      const jsm = await this.nc.jetstreamManager({ timeout: this.requestMs, checkAPI: false, ...(this.opts.bucket?.domain ? { domain: this.opts.bucket.domain } : {}) });
      await jsm.streams.info(`KV_${this.bucket}`);
      return false;
    } catch (e) {
      return isStreamNotFound(e);
    }
  }

  private open(): Promise<KV> {
    if (this.kv) return Promise.resolve(this.kv);
    if (!this.opening) {
      const opening = openBucket(this.nc, this.bucket, { ...this.opts.bucket, timeoutMs: this.requestMs, log: this.log }).then(
        (kv) => { if (this.opening === opening) this.kv = kv; return kv; },
        (err) => { if (this.opening === opening) this.opening = undefined; throw err; },
      );
      this.opening = opening;
    }
    return this.opening;
  }

  /** Drop a handle whose stream is gone, so that the next open creates the bucket again. */
  private forget(kv: KV): void {
    if (this.kv !== kv) return;
    this.kv = undefined;
    this.opening = undefined;
  }

  /**
   * Restart the watch when the bucket's stream is deleted or created under us
   * (an ordered consumer would otherwise go on in the new stream from the old
   * stream's sequence, or only notice after missed heartbeats), and after a
   * reconnect (the server may have restarted without its store). Without the
   * permission to hear advisories, a lost stream is still noticed when the
   * watch fails or a write finds it gone.
   */
  private follow(): void {
    if (this.statusEvents || this.stopped) return;
    const stream = `KV_${this.bucket}`;
    if (this.opts.advisories !== false) try {
      this.advisories = this.nc.subscribe(`$JS.EVENT.ADVISORY.STREAM.*.${stream}`, {
        callback: (err, m) => {
          if (err) { this.log.debug('settings bucket advisories not available', { err: err.message }); return; }
          const what = m.subject.split('.')[4];
          if (what === 'DELETED') this.restartSoon('settings bucket deleted');
          // The watch's consumer may have lived on the old leader's server: read again from the new one.
          else if (what === 'LEADER_ELECTED') this.restartSoon('settings bucket has a new leader');
          // Often this replica's own creation: restart only if it is not the stream watched.
          else if (what === 'CREATED') void this.check();
        },
      });
    } catch (err) {
      this.log.debug('settings bucket advisories not available', { err: (err as Error).message });
    }
    const events = this.nc.status();
    this.statusEvents = events;
    (async () => {
      for await (const st of events) {
        if (this.stopped) break;
        if (String((st as { type: unknown }).type) === 'reconnect') this.restartSoon('reconnected to NATS');
      }
    })().catch(() => {});
    this.scheduleCheck();
  }

  private scheduleCheck(): void {
    const every = this.opts.checkMs ?? 5000;
    if (this.stopped || !(every > 0)) return;
    clearTimeout(this.checkTimer);
    const next = Date.now() < this.fastChecksUntil ? Math.min(every, FAST_CHECK_MS) : every;
    this.checkTimer = setTimeout(() => { void this.check().finally(() => this.scheduleCheck()); }, next);
    this.checkTimer.unref?.();
  }

  /**
   * Restart the watch if the bucket's stream is gone, is not the one
   * watched, has another leader, or holds entries the watch has not
   * delivered while it delivered nothing since the previous check (its
   * consumer stalled: seen after a stream leader's server was killed).
   */
  private async check(): Promise<void> {
    const gen = this.generation;
    const kv = this.kv;
    const watched = this.streamCreated;
    if (kv === undefined || this.watcher === undefined || watched === undefined) return;
    try {
      const info = (await kv.status()).streamInfo;
      if (gen !== this.generation) return;
      const behind = info.state.last_seq > this.seenSeq;
      const stalled = behind && this.lagging !== undefined && this.lagging.seen === this.seenSeq;
      this.lagging = behind ? { seen: this.seenSeq } : undefined;
      if (info.created !== watched) this.restartSoon('settings bucket was created anew');
      else if (info.cluster?.leader !== this.streamLeader) this.restartSoon('settings bucket has a new leader');
      else if (stalled) this.restartSoon('settings watch stalled behind the bucket');
    } catch (err) {
      if (gen === this.generation && isStreamNotFound(err)) this.restartSoon('settings bucket is gone');
    }
  }

  /** Coalesces bursts (a delete followed by a create). */
  private restartSoon(why: string): void {
    if (this.stopped) return;
    this.checkFast();
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => { void this.restartNow(why); }, 50);
    this.restartTimer.unref?.();
  }

  private async restartNow(why: string): Promise<void> {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.log.info('settings watch restarting', { bucket: this.bucket, why });
    try {
      await this.watch();
    } catch (err) {
      this.log.warn('settings watch failed; retrying', { bucket: this.bucket, err: (err as Error).message });
      this.scheduleRetry();
    }
  }

  /**
   * Start a new watch (stopping the previous one) and resolve once its
   * initial values are applied. Keys this watch's initial values do not hold
   * are no longer set: the config file's value is back in force. Resolves
   * without doing anything more when a newer watch superseded it meanwhile.
   */
  private async watch(): Promise<void> {
    const gen = ++this.generation;
    this.watcher?.stop();
    this.watcher = undefined;
    const current = () => gen === this.generation && !this.stopped;

    // Initial values are complete when the client says so. When it says so
    // before handing out the iterator, they are the entries queued by then.
    let returned = false;
    let early = false;
    let finished = false;
    let initialized!: () => void;
    const done = new Promise<void>((resolve) => { initialized = resolve; });
    // The iterator ends when a newer watch stops it, or on an error.
    let ended!: () => void;
    const over = new Promise<void>((resolve) => { ended = resolve; });
    const finish = () => {
      if (finished) return;
      finished = true;
      if (current()) this.unsetUnseen(gen);
      initialized();
    };
    const opts = { key: '>', initializedFn: () => { if (returned) finish(); else early = true; } };

    // The stream's creation time, read before the watch starts: if the
    // stream is replaced after that, the periodic check tells.
    const begin = async (kv: KV): Promise<{ it: Watch; created: string; leader: string | undefined }> => {
      const info = (await kv.status()).streamInfo;
      return { it: await kv.watch(opts), created: info.created, leader: info.cluster?.leader };
    };
    let it: Watch;
    let created: string;
    let leader: string | undefined;
    try {
      let kv = await this.open();
      try {
        ({ it, created, leader } = await begin(kv));
      } catch (err) {
        if (!isStreamNotFound(err) || !current()) throw err;
        this.log.warn('settings bucket is gone; creating it again', { bucket: this.bucket });
        this.forget(kv);
        kv = await this.open();
        ({ it, created, leader } = await begin(kv));
      }
    } catch (err) {
      if (!current()) return;
      throw err;
    }
    returned = true;
    if (!current()) { it.stop(); return; }
    this.watcher = it;
    this.streamCreated = created;
    this.streamLeader = leader;
    this.seenSeq = 0;
    this.lagging = undefined;
    const target = early ? it.getReceived() : undefined;
    if (target === 0) finish();

    (async () => {
      let processed = 0;
      for await (const e of it) {
        if (gen !== this.generation) break;
        processed++;
        if (e.revision > this.seenSeq) this.seenSeq = e.revision;
        const deleted = e.operation === 'DEL' || e.operation === 'PURGE';
        const raw = deleted ? undefined : dec.decode(e.value);
        let value: unknown;
        let ok = true;
        if (raw !== undefined) {
          try {
            value = JSON.parse(raw);
          } catch {
            this.log.warn('ignoring a setting that is not JSON', { key: e.key, revision: e.revision });
            ok = false;
          }
        }
        // Not JSON: nothing to apply, but the key is held (not back to the config's value).
        if (ok) this.apply(e.key, value, raw, e.revision, gen);
        else this.claim(e.key, e.revision, gen, raw);
        if (target !== undefined && processed >= target) finish();
      }
    })().then(
      () => { ended(); this.rewatch(gen, 'watch ended'); },
      (err) => { ended(); this.rewatch(gen, (err as Error).message); },
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`initial settings not read within ${this.timeoutMs} ms`)), this.timeoutMs); });
    let failure: Error | undefined;
    try {
      await Promise.race([done, over, timeout]);
    } catch (err) {
      failure = err as Error;
    } finally {
      clearTimeout(timer);
    }
    if (!current()) return;
    if (finished) { this.retryDelay = RETRY_MIN_MS; return; }
    it.stop();
    if (this.watcher === it) this.watcher = undefined;
    throw failure ?? new Error('settings watch ended before its initial values were read');
  }

  /** Check every second for a while: the watch just restarted after a disturbance, and may stall. */
  private checkFast(): void {
    const wasFast = Date.now() < this.fastChecksUntil;
    this.fastChecksUntil = Date.now() + FAST_CHECKS_FOR_MS;
    if (!wasFast && this.statusEvents) this.scheduleCheck();
  }

  private rewatch(gen: number, why: string): void {
    if (this.stopped || gen !== this.generation) return;
    this.checkFast();
    this.watcher = undefined;
    this.log.warn('settings watch stopped; restarting', { why });
    this.scheduleRetry();
  }

  /**
   * Retry the watch after 100 ms, doubling up to `retryMaxMs` (1 s): once
   * JetStream can serve the bucket again, the watch is back within one
   * request timeout (2 s) plus that pause.
   */
  private scheduleRetry(): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const delay = this.retryDelay;
    this.retryDelay = Math.min(delay * 2, this.retryMaxMs);
    this.retryTimer = setTimeout(() => {
      if (this.stopped || this.watcher) return;
      this.watch().then(
        () => this.log.info('settings bucket watched', { bucket: this.bucket }),
        () => this.scheduleRetry(),
      );
    }, delay);
    this.retryTimer.unref?.();
  }

  /** Keys set before this watch that its initial values do not hold: back to the config file's value. */
  private unsetUnseen(gen: number): void {
    for (const [key, rec] of [...this.applied]) {
      if (rec.generation >= gen) continue;
      this.applied.delete(key);
      if (rec.raw !== undefined) this.deliver(key, undefined, 0);
    }
  }

  /**
   * Record that `revision` of `key` is applied under watch `gen`; false when
   * it (or a later revision) was already, or when a newer watch is in charge.
   * A revision below the recorded one is taken when the record is from an
   * earlier watch: the bucket may have been created anew since.
   */
  private claim(key: string, revision: number, gen: number, raw: string | undefined): boolean {
    const rec = this.applied.get(key);
    if (rec !== undefined && (rec.generation > gen || (rec.generation === gen && rec.revision >= revision))) return false;
    this.applied.set(key, { revision, generation: gen, raw });
    return true;
  }

  /** Apply one entry (`raw` its JSON, undefined for a delete) unless this revision (or a later one) of the key was applied already by this watch. */
  private apply(key: string, value: unknown, raw: string | undefined, revision: number, gen = this.generation): void {
    if (this.claim(key, revision, gen, raw)) this.deliver(key, value, revision);
  }

  private deliver(key: string, value: unknown, revision: number): void {
    try {
      if (key === STRATEGY_KEY) {
        const v = value === undefined ? undefined : validators.strategy(value, STRATEGY_KEY);
        if (v) delete v.by;
        this.listener.strategy(v, revision, metaOf(value));
      } else if (key.startsWith(WEIGHT_KEY_PREFIX)) {
        const nodeId = key.slice(WEIGHT_KEY_PREFIX.length);
        const w = value === undefined ? undefined : validators.weight({ nodeId, ...(value as object) }, key).weight;
        this.listener.weight(nodeId, w, revision, metaOf(value));
      } else if (key.startsWith(HEALTH_KEY_PREFIX)) {
        const nodeId = key.slice(HEALTH_KEY_PREFIX.length);
        const v = value === undefined ? undefined : validateHealthVerdict(value);
        if (v !== undefined && v.nodeId !== nodeId) throw new Error(`verdict for ${v.nodeId} stored under ${key}`);
        this.listener.health?.(nodeId, v, revision);
        this.listener.other?.(key, value, revision);
      } else {
        // Other keys belong to other services (e.g. the autoscaler's targets): shown, not applied.
        this.listener.other?.(key, value, revision);
      }
    } catch (err) {
      this.log.warn('ignoring an invalid setting', { key, revision, err: (err as Error).message });
    }
  }
}

const RETRY_MIN_MS = 100;
const FAST_CHECK_MS = 1000;
const FAST_CHECKS_FOR_MS = 30_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
