import { ErrorCodes, ShoalError } from '@shoal/protocol';
import { openBucket, type BucketOptions } from '@shoal/runtime';
import type { KV, NatsConnection } from 'nats';

/**
 * A cap on work running at once per key, across the cluster (claude-cli:
 * turns per credential). The count lives in the JetStream KV bucket
 * `shoal_turns` as `cap` slot keys `<key>.<i>`:
 *
 * - take a slot: `create` (fails if a live value is there), or take over a
 *   slot whose holder stopped refreshing it for `ttl` (a dead node) with a
 *   compare-and-set `update`;
 * - hold: refresh it (`update`, same revision check) every ttl/3;
 * - give back: `delete` with the revision, so a late give-back never frees a
 *   slot someone else took over.
 *
 * Waiting is local and fair: per key a queue per client name, served round
 * robin; only the head of the queue asks the bucket (with backoff), so a
 * node's waiters cost one KV read per try, not one each. A `pause` (the CLI
 * reported 429/529) holds new grants on this node for a while.
 *
 * The decisions (next client, backoff, stale slot) are pure functions below,
 * unit-tested without a network.
 */

export const TURNS_BUCKET = 'shoal_turns';

/** A slot whose holder has not refreshed it for this long is free for the taking. */
export const SLOT_TTL_MS = 15_000;

export interface Gate {
  /** Wait for a slot (fairly per client); resolves with the give-back. Rejects when `signal` aborts. */
  acquire(client: string | undefined, signal?: AbortSignal): Promise<() => void>;
  /** No new grants on this node for `ms` (the API said it is overloaded or limiting us). */
  pause(ms: number): void;
}

export interface GateProvider {
  gate(key: string, cap: number): Gate;
}

// ---- pure decisions ---------------------------------------------------------

/**
 * Round robin over clients with waiters: take the first waiter of the first
 * client, then move that client behind the others (or drop it when it has
 * no more). One client's burst never makes the others wait behind all of it.
 */
export function pickFair<T>(queues: Map<string, T[]>): T | undefined {
  for (const [client, q] of queues) {
    const item = q.shift();
    queues.delete(client);
    if (q.length > 0) queues.set(client, q);
    if (item !== undefined) return item;
  }
  return undefined;
}

/** Delay before the n-th failed try to get a slot (n from 1): doubling from 25 ms to 1 s, with jitter so nodes do not poll in step. */
export function retryDelay(n: number, random: () => number): number {
  const base = Math.min(1000, 25 * 2 ** Math.min(n - 1, 6));
  return Math.round(base * (0.5 + random()));
}

/** A slot value: who holds it and when it was last refreshed (epoch ms). */
export interface Slot {
  holder: string;
  at: number;
}

export function isStale(slot: Slot | undefined, now: number, ttlMs = SLOT_TTL_MS): boolean {
  return !slot || now - slot.at > ttlMs;
}

// ---- the KV gate -------------------------------------------------------------

interface Waiter {
  client: string;
  resolve: (release: () => void) => void;
  reject: (e: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

class KvGate implements Gate {
  /** Waiting clients in the order their queue was opened, and each one's waiters. */
  private readonly queues = new Map<string, Waiter[]>();
  private pumping = false;
  private pausedUntil = 0;
  private seq = 0;
  private warned = false;

  constructor(
    private readonly kv: () => Promise<KV>,
    private readonly key: string,
    private readonly cap: number,
    private readonly holderId: string,
    private readonly random: () => number,
    private readonly warn?: (msg: string, fields: Record<string, unknown>) => void,
  ) {}

  acquire(client: string | undefined, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const name = client || '_unknown';
      const w: Waiter = { client: name, resolve, reject, signal, onAbort: undefined };
      if (signal) {
        w.onAbort = () => { this.drop(w); reject(signal.reason); };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      const q = this.queues.get(name);
      if (q) q.push(w); else this.queues.set(name, [w]);
      void this.pump();
    });
  }

  pause(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, Date.now() + ms);
  }

  private drop(w: Waiter): void {
    const q = this.queues.get(w.client);
    if (!q) return;
    const i = q.indexOf(w);
    if (i >= 0) q.splice(i, 1);
    if (q.length === 0) this.queues.delete(w.client);
  }

  /** One loop per gate: take a slot for the next fair waiter, hand it over, repeat while anyone waits. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      let tries = 0;
      while (this.queues.size > 0) {
        const wait = this.pausedUntil - Date.now();
        if (wait > 0) { await sleep(wait); continue; }
        const slot = await this.take().catch((err: Error) => {
          // No bucket (JetStream off, no permission): turns wait until their deadline; say why, once per outage.
          if (!this.warned) { this.warned = true; this.warn?.('account turn cap: cannot reach its KV bucket; turns wait', { key: this.key, err: err.message }); }
          return undefined;
        });
        if (slot) this.warned = false;
        if (!slot) {
          await sleep(retryDelay(++tries, this.random));
          continue;
        }
        tries = 0;
        const w = pickFair(this.queues);
        if (!w) { slot.release(); continue; }
        if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
        w.resolve(slot.release);
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Take a free or stale slot; undefined when all `cap` are held. */
  private async take(): Promise<{ release: () => void } | undefined> {
    const kv = await this.kv();
    const me = `${this.holderId}/${++this.seq}`;
    const value = () => enc.encode(JSON.stringify({ holder: me, at: Date.now() } satisfies Slot));
    // Start at a random slot: nodes do not all fight for slot 0.
    const start = Math.floor(this.random() * this.cap);
    for (let k = 0; k < this.cap; k++) {
      const name = `${this.key}.${(start + k) % this.cap}`;
      let rev: number;
      try {
        const e = await kv.get(name);
        if (!e || e.operation !== 'PUT') {
          rev = await kv.create(name, value());
        } else {
          let slot: Slot | undefined;
          try { slot = JSON.parse(dec.decode(e.value)) as Slot; } catch { slot = undefined; }
          if (!isStale(slot, Date.now())) continue;
          rev = await kv.update(name, value(), e.revision);
        }
      } catch {
        continue; // someone else was faster
      }
      return { release: this.hold(kv, name, rev, value) };
    }
    return undefined;
  }

  /** Keep the slot fresh while held; the returned function gives it back (once). */
  private hold(kv: KV, name: string, rev0: number, value: () => Uint8Array): () => void {
    let rev = rev0;
    let done = false;
    const timer = setInterval(() => {
      kv.update(name, value(), rev).then((r) => { rev = r; }, () => { /* taken over (we looked dead): nothing to refresh */ });
    }, Math.floor(SLOT_TTL_MS / 3));
    timer.unref();
    return () => {
      if (done) return;
      done = true;
      clearInterval(timer);
      kv.delete(name, { previousSeq: rev }).catch(() => { /* already taken over or gone */ });
      // A freed slot may serve our next waiter at once.
      if (this.queues.size > 0) void this.pump();
    };
  }
}

/** The same gate, in this process only (no NATS: the driver used on its own, in tests). */
class LocalGate implements Gate {
  private running = 0;
  private readonly queues = new Map<string, Waiter[]>();
  private pausedUntil = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly cap: number) {}

  acquire(client: string | undefined, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const name = client || '_unknown';
      const w: Waiter = { client: name, resolve, reject, signal, onAbort: undefined };
      if (signal) {
        w.onAbort = () => {
          const q = this.queues.get(name);
          if (q) { q.splice(q.indexOf(w), 1); if (q.length === 0) this.queues.delete(name); }
          reject(signal.reason);
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      const q = this.queues.get(name);
      if (q) q.push(w); else this.queues.set(name, [w]);
      this.grant();
    });
  }

  pause(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, Date.now() + ms);
  }

  private grant(): void {
    while (this.running < this.cap && this.queues.size > 0) {
      const wait = this.pausedUntil - Date.now();
      if (wait > 0) {
        if (!this.timer) this.timer = setTimeout(() => { this.timer = undefined; this.grant(); }, wait);
        return;
      }
      const w = pickFair(this.queues)!;
      if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
      this.running++;
      let done = false;
      w.resolve(() => { if (!done) { done = true; this.running--; this.grant(); } });
    }
  }
}

const sleep = (ms: number) => new Promise<void>((r) => { setTimeout(r, ms).unref?.(); });

/** Gates backed by the `shoal_turns` bucket of this NATS connection; one per key and cap. */
export function kvGates(nc: NatsConnection, holderId: string, random: () => number = Math.random, warn?: (msg: string, fields: Record<string, unknown>) => void, bucket: Pick<BucketOptions, 'replicas' | 'storage' | 'domain' | 'log'> = {}): GateProvider {
  let opening: Promise<KV> | undefined;
  const kv = (): Promise<KV> => {
    if (!opening) {
      opening = openBucket(nc, TURNS_BUCKET, { ...bucket, timeoutMs: 5000 });
      opening.catch(() => { opening = undefined; });
    }
    return opening.catch((err: Error) => {
      throw new ShoalError(ErrorCodes.UNAVAILABLE, `bucket ${TURNS_BUCKET} is not available (JetStream enabled?): ${err.message}`);
    });
  };
  const gates = new Map<string, Gate>();
  return {
    gate(key, cap) {
      const id = `${key}/${cap}`;
      let g = gates.get(id);
      if (!g) gates.set(id, (g = new KvGate(kv, key, cap, holderId, random, warn)));
      return g;
    },
  };
}

export function localGates(): GateProvider {
  const gates = new Map<string, Gate>();
  return {
    gate(key, cap) {
      const id = `${key}/${cap}`;
      let g = gates.get(id);
      if (!g) gates.set(id, (g = new LocalGate(cap)));
      return g;
    },
  };
}
