/** A point of a time series: `at` in ms, `v` the value. */
export interface Point { at: number; v: number }

/**
 * Least-squares line through the points: `slope` per ms and the line's value
 * at the last point. Fewer than 3 points, or all at one instant: no trend.
 */
export function linearTrend(points: readonly Point[]): { slope: number; last: number } | undefined {
  if (points.length < 3) return undefined;
  const t0 = points[0]!.at;
  let sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const p of points) {
    const x = p.at - t0;
    sx += x; sy += p.v; sxx += x * x; sxy += x * p.v;
  }
  const n = points.length;
  const den = n * sxx - sx * sx;
  if (den === 0) return undefined;
  const slope = (n * sxy - sx * sy) / den;
  const intercept = (sy - slope * sx) / n;
  return { slope, last: intercept + slope * (points[n - 1]!.at - t0) };
}

/**
 * Demand `leadMs` from now, extrapolated from the trend of the points of the
 * last `windowMs`. Only a rising trend counts: prediction creates ahead of a
 * ramp, and never shrinks a pool (scale-down stays reactive and stabilized).
 * Undefined when there is no rising trend.
 */
export function forecastDemand(points: readonly Point[], now: number, leadMs: number, windowMs: number): number | undefined {
  const recent = points.filter((p) => p.at >= now - windowMs && p.at <= now);
  const t = linearTrend(recent);
  if (!t || t.slope <= 0) return undefined;
  return Math.max(0, t.last + t.slope * (now - recent[recent.length - 1]!.at + leadMs));
}
