import { AUTOSCALER_EPOCH_KEY, AUTOSCALER_LEADER_BUCKET } from '@shoal/protocol';
import { openBucket, type JetStreamSettings, type KV, type Logger, type NatsConnection } from '@shoal/runtime';

/** The one key of the leader bucket. */
export const LEADER_KEY = 'leader';

export interface LeaderRecord { id: string; epoch: number; since: number }

export interface LeaderOptions {
  id: string;
  /** The lease: the bucket's max_age. A follower takes over within about lease + lease/4 of the leader's last renewal. */
  leaseTtlMs: number;
  settingsBucket: string;
  leaderBucket?: string;
  onElected(epoch: number): void;
  onDeposed(why: string): void;
  log: Logger;
  /** JetStream request deadline. */
  timeoutMs?: number;
  /** Replicas, storage and domain of both buckets (the `jetstream` config section). */
  jetstream?: JetStreamSettings;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Leader election on JetStream KV. nats-server 2.9 has no per-key TTL, so the
 * lease is a bucket of its own whose max_age is the lease TTL: `create` takes
 * the key when it is free (absent, expired or deleted), `update` at the
 * revision we wrote renews it (compare-and-set: it fails once anyone else
 * wrote it). The server forgets an expired lease, so the term's epoch is kept
 * elsewhere: `autoscaler.epoch` in the settings bucket, bumped by
 * compare-and-set when a term starts, so it strictly increases across terms.
 *
 * A leader acts only while its lease is surely valid by its own clock
 * (`isLeader`): a process paused past its lease (SIGSTOP, a long GC) wakes up
 * a follower; the nodes' epoch check stops whatever it sends before noticing.
 */
export class LeaderElection {
  private leaderKv: KV | undefined;
  private settingsKv: KV | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private revision = 0;
  /** When the write that holds the lease was sent: the server expires it no earlier than lease TTL after. */
  private heldSince = 0;
  private leading = false;
  epoch = 0;
  /** The leader as last read from the bucket (followers too). */
  current: LeaderRecord | undefined;

  constructor(private readonly nc: NatsConnection, private readonly o: LeaderOptions) {}

  private get ttl(): number { return this.o.leaseTtlMs; }

  /** True while this replica holds an unexpired lease; acting needs it. */
  isLeader(): boolean {
    return this.leading && Date.now() - this.heldSince < this.ttl * 0.75;
  }

  start(): void {
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => { void this.tick(); }, ms);
  }

  private async open(): Promise<void> {
    const opts = { ...this.o.jetstream, timeoutMs: this.o.timeoutMs ?? 2000, log: this.o.log };
    this.leaderKv ??= await openBucket(this.nc, this.o.leaderBucket ?? AUTOSCALER_LEADER_BUCKET, { ...opts, ttlMs: this.ttl });
    this.settingsKv ??= await openBucket(this.nc, this.o.settingsBucket, opts);
  }

  private async tick(): Promise<void> {
    try {
      await this.open();
      if (this.leading) await this.renew();
      else await this.campaign();
    } catch (err) {
      this.o.log.debug('leader election step failed', { err: (err as Error).message });
      if (this.leading && !this.isLeader()) this.stepDown(`lease not renewed: ${(err as Error).message}`);
    }
    // A leader renews three times per lease; a follower looks four times.
    this.schedule(this.leading ? Math.max(50, this.ttl / 3) : Math.max(50, Math.min(500, this.ttl / 4)));
  }

  private async campaign(): Promise<void> {
    const kv = this.leaderKv!;
    const sent = Date.now();
    let rev: number;
    try {
      rev = await kv.create(LEADER_KEY, enc.encode(JSON.stringify({ id: this.o.id, epoch: 0, since: sent })));
    } catch {
      const e = await kv.get(LEADER_KEY).catch(() => null);
      if (e && e.operation === 'PUT') this.current = parseRecord(e.value);
      return;
    }
    this.revision = rev;
    this.heldSince = sent;
    const epoch = await this.bumpEpoch();
    const rec: LeaderRecord = { id: this.o.id, epoch, since: sent };
    const sent2 = Date.now();
    this.revision = await kv.update(LEADER_KEY, enc.encode(JSON.stringify(rec)), this.revision);
    this.heldSince = sent2;
    this.epoch = epoch;
    this.current = rec;
    this.leading = true;
    this.o.log.info('elected leader', { epoch, leaseTtlMs: this.ttl });
    this.o.onElected(epoch);
  }

  /** The next epoch, by compare-and-set on the settings bucket: two terms never share one. */
  private async bumpEpoch(): Promise<number> {
    const kv = this.settingsKv!;
    for (let i = 0; i < 20; i++) {
      const e = await kv.get(AUTOSCALER_EPOCH_KEY);
      const last = e && e.operation === 'PUT' ? Number(dec.decode(e.value)) : 0;
      const next = (Number.isFinite(last) ? Math.floor(last) : 0) + 1;
      try {
        if (e) await kv.update(AUTOSCALER_EPOCH_KEY, enc.encode(String(next)), e.revision);
        else await kv.create(AUTOSCALER_EPOCH_KEY, enc.encode(String(next)));
        return next;
      } catch { /* another writer: read again */ }
    }
    throw new Error('could not bump the autoscaler epoch');
  }

  private async renew(): Promise<void> {
    const sent = Date.now();
    try {
      this.revision = await this.leaderKv!.update(LEADER_KEY, enc.encode(JSON.stringify(this.current)), this.revision);
      this.heldSince = sent;
    } catch (err) {
      const msg = (err as Error).message;
      // Someone else wrote the key (or it expired and was taken): our term is over.
      if (/wrong last sequence|key exists/i.test(msg)) this.stepDown('lease taken by another replica');
      else throw err;
    }
  }

  private stepDown(why: string): void {
    if (!this.leading) return;
    this.leading = false;
    this.o.log.warn('no longer leader', { epoch: this.epoch, why });
    this.o.onDeposed(why);
  }

  /** Stop campaigning; a leader gives the lease up so a follower takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.leading && this.isLeader()) {
      await this.leaderKv?.delete(LEADER_KEY, { previousSeq: this.revision }).catch(() => {});
    }
    this.leading = false;
  }
}

function parseRecord(b: Uint8Array): LeaderRecord | undefined {
  try {
    const r = JSON.parse(dec.decode(b)) as LeaderRecord;
    return typeof r.id === 'string' && typeof r.epoch === 'number' ? r : undefined;
  } catch {
    return undefined;
  }
}
