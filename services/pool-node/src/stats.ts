import type { Clock } from './clock.js';

/** Exponentially weighted moving average; alpha 0.2 forgets in ~10 samples. */
export class Ewma {
  value = 0;
  private primed = false;
  constructor(private readonly alpha = 0.2) {}
  add(x: number): void {
    this.value = this.primed ? this.value + this.alpha * (x - this.value) : x;
    this.primed = true;
  }
}

/** Counts per second over a sliding window of `seconds` one-second buckets. */
export class RateWindow {
  private readonly buckets: Float64Array;
  private head = 0;
  private headSecond = 0;
  constructor(private readonly clock: Clock, private readonly seconds = 10) {
    this.buckets = new Float64Array(seconds);
  }
  private roll(): void {
    const sec = Math.floor(this.clock.now() / 1000);
    const steps = Math.min(this.seconds, sec - this.headSecond);
    for (let i = 0; i < steps; i++) {
      this.head = (this.head + 1) % this.seconds;
      this.buckets[this.head] = 0;
    }
    if (steps > 0 || this.headSecond === 0) this.headSecond = sec;
  }
  add(n = 1): void {
    this.roll();
    this.buckets[this.head]! += n;
  }
  /** Sum over the window. */
  sum(): number {
    this.roll();
    let s = 0;
    for (const b of this.buckets) s += b;
    return s;
  }
  perSecond(): number {
    return this.sum() / this.seconds;
  }
}

/** A pool's running numbers for heartbeats and placement: latency, rates, reuse. */
export class PoolMeter {
  readonly acquireLatency = new Ewma();
  readonly execLatency = new Ewma();
  readonly createLatency = new Ewma();
  private readonly requests: RateWindow;
  private readonly failures: RateWindow;
  acquires = 0;
  reuses = 0;

  constructor(clock: Clock) {
    this.requests = new RateWindow(clock);
    this.failures = new RateWindow(clock);
  }

  request(): void { this.requests.add(); }
  acquired(ms: number, reused: boolean): void {
    this.acquireLatency.add(ms);
    this.acquires++;
    if (reused) this.reuses++;
  }
  failed(): void { this.failures.add(); }
  executed(ms: number, ok: boolean): void {
    this.execLatency.add(ms);
    if (!ok) this.failures.add();
  }

  get requestRate(): number { return this.requests.perSecond(); }
  get errorRate(): number {
    const r = this.requests.sum();
    return r === 0 ? 0 : Math.min(1, this.failures.sum() / r);
  }
  /** Share of acquires served by a resource that had been leased before. */
  get reuseRate(): number { return this.acquires === 0 ? 0 : this.reuses / this.acquires; }
}
