/** A point of a time series: `at` in ms, `v` the value. */
export interface Point { at: number; v: number }

/**
 * Theil–Sen line through the points: the slope is the median of the slopes
 * between every pair of points, so a step (a jump between two flat stretches)
 * reads as flat until most of the window has seen the new level, while a true
 * ramp reads exactly; least squares would extrapolate a step as a steep ramp
 * and overshoot. Returns the slope per ms and the line's value at the last
 * point. Fewer than 3 points, or all at one instant: no trend.
 */
export function linearTrend(points: readonly Point[]): { slope: number; last: number } | undefined {
  if (points.length < 3) return undefined;
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const dx = points[j]!.at - points[i]!.at;
      if (dx > 0) slopes.push((points[j]!.v - points[i]!.v) / dx);
    }
  }
  if (slopes.length === 0) return undefined;
  const slope = median(slopes);
  const lastAt = points[points.length - 1]!.at;
  const intercept = median(points.map((p) => p.v - slope * (p.at - lastAt)));
  return { slope, last: intercept };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
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
