import type { Clock, Timer } from '@shoal/pool-node';

interface Pending { at: number; seq: number; fn: () => void }

/** Let every queued promise continuation run. */
export const settle = () => new Promise<void>((r) => setImmediate(r));

/**
 * A clock that moves only when told. `advance(ms)` fires due timers in time
 * order, letting promise continuations run between them, as real time would.
 */
export class FakeClock implements Clock {
  private t = 1_700_000_000_000;
  private seq = 0;
  private timers = new Set<Pending>();

  now(): number { return this.t; }
  setTimeout(fn: () => void, ms: number): Timer {
    const p: Pending = { at: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(p);
    return p as unknown as Timer;
  }
  clearTimeout(t: Timer | undefined): void { if (t) this.timers.delete(t as unknown as Pending); }
  get pending(): number { return this.timers.size; }

  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await settle();
    for (;;) {
      let next: Pending | undefined;
      for (const p of this.timers) if (p.at <= end && (!next || p.at < next.at || (p.at === next.at && p.seq < next.seq))) next = p;
      if (!next) break;
      this.timers.delete(next);
      this.t = Math.max(this.t, next.at);
      next.fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
}

/** A deterministic random source. */
export function seeded(seed = 42): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
