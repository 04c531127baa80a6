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
 * The Theil–Sen line of the whole window, but only when the earlier and the
 * later half of the window (split at the middle instant, the middle point in
 * both) each rise on their own. A ramp rises in both halves. A jump does
 * not: before it the window is flat, after it the series is flat or falling;
 * nor does the leap a pool shows when the creates it started for a queue of
 * waiters land together (leased resources leap, then fall back as the queue
 * drains). Theil–Sen alone reads such a jump as a ramp once more than half
 * of the pairs straddle it, and extrapolates the backlog. Slope and level
 * come from the whole window (more points, less noise than a half).
 * Undefined when either half has fewer than 2 points or does not rise.
 */
export function sustainedTrend(points: readonly Point[]): { slope: number; last: number } | undefined {
  if (points.length < 3) return undefined;
  const mid = (points[0]!.at + points[points.length - 1]!.at) / 2;
  const a = halfTrend(points.filter((p) => p.at <= mid));
  const b = halfTrend(points.filter((p) => p.at >= mid));
  if (!a || !b || a.slope <= 0 || b.slope <= 0) return undefined;
  const t = linearTrend(points);
  return t && t.slope > 0 ? t : undefined;
}

/** Theil–Sen on one half: two points are enough there (their slope), the whole window had at least three. */
function halfTrend(points: readonly Point[]): { slope: number; last: number } | undefined {
  if (points.length === 2) {
    const [p, q] = points as [Point, Point];
    return q.at > p.at ? { slope: (q.v - p.v) / (q.at - p.at), last: q.v } : undefined;
  }
  return linearTrend(points);
}

/**
 * Demand `leadMs` from now, extrapolated from the trend that held over the
 * points of the last `windowMs` (see `sustainedTrend`). Only a rising trend
 * counts: prediction creates ahead of a ramp, and never shrinks a pool
 * (scale-down stays reactive and stabilized). Undefined when there is no
 * rising trend.
 */
export function forecastDemand(points: readonly Point[], now: number, leadMs: number, windowMs: number): number | undefined {
  const recent = points.filter((p) => p.at >= now - windowMs && p.at <= now);
  const t = sustainedTrend(recent);
  if (!t) return undefined;
  return Math.max(0, t.last + t.slope * (now - recent[recent.length - 1]!.at + leadMs));
}
