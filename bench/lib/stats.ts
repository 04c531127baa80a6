/**
 * Pure numeric helpers for the benchmark: percentiles, medians, rounding.
 * Kept free of I/O so they can be unit-tested (test/unit/bench-stats.test.ts).
 */

/**
 * The p-th percentile (0..100) of `sorted` (ascending), nearest-rank method:
 * the smallest value such that at least p% of the samples are <= it.
 * NaN for an empty input.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  if (p <= 0) return sorted[0]!;
  if (p >= 100) return sorted[n - 1]!;
  const rank = Math.ceil((p / 100) * n);
  return sorted[Math.min(n, Math.max(1, rank)) - 1]!;
}

/** Ascending copy of the samples as a Float64Array (numeric sort, no string compare). */
export function sortedCopy(samples: ArrayLike<number>): Float64Array {
  const a = Float64Array.from(samples as ArrayLike<number>);
  a.sort();
  return a;
}

/** Median of a list of numbers (mean of the two middle ones for an even count); NaN if empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Round to `digits` decimal places (default 0), for compact JSON output. */
export function round(x: number, digits = 0): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** a / b, or NaN when b is 0 or either side is not finite. */
export function ratio(a: number, b: number): number {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : NaN;
}

/** Latency summary of one run, in microseconds. `samplesMs` are milliseconds. */
export function latencySummaryUs(samplesMs: ArrayLike<number>): { p50_us: number; p99_us: number; n: number } {
  const s = sortedCopy(samplesMs);
  return { p50_us: percentile(s, 50) * 1000, p99_us: percentile(s, 99) * 1000, n: s.length };
}
