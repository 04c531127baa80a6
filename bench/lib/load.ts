/**
 * Closed-loop load: `concurrency` workers, each running `cycle` back to back
 * until the time is up. A cycle may return the duration (ms) of one of its
 * steps (e.g. the acquire inside acquire+release); those are summarised too.
 */
import { performance } from 'node:perf_hooks';
import { procMeter } from './cpu.js';
import { latencySummaryUs } from './stats.js';

export type Cycle = () => Promise<number | void>;

export interface RunResult {
  ops: number;
  errors: number;
  firstError: string | undefined;
  elapsedMs: number;
  ops_per_s: number;
  p50_us: number;
  p99_us: number;
  /** p50 of the step each cycle reported, if it reported one. */
  step_p50_us: number;
  /** CPU µs per cycle of each process named in `pids` (user + system, over the whole run). */
  cpu_us_per_op: Record<string, number>;
  /** Write system calls per cycle of each process in `pids` (socket writes, mostly). */
  writes_per_op: Record<string, number>;
}

export async function closedLoop(concurrency: number, durationMs: number, cycle: Cycle, pids: Record<string, number | undefined> = {}): Promise<RunResult> {
  const lat: number[] = [];
  const step: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const usage = procMeter(pids);
  const start = performance.now();
  const end = start + durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        const s = await cycle();
        lat.push(performance.now() - t0);
        if (typeof s === 'number') step.push(s);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? `${(err as { code?: string }).code ?? err.name}: ${err.message}` : String(err);
        // An error storm must not spin: give the system a moment.
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedMs = performance.now() - start;
  const used = usage();
  const perOp = (f: (u: { cpuUs: number; writes: number }) => number) => Object.fromEntries(Object.entries(used).map(([k, u]) => [k, lat.length ? f(u) / lat.length : NaN]));
  const l = latencySummaryUs(lat);
  const st = latencySummaryUs(step);
  return { ops: lat.length, errors, firstError, elapsedMs, ops_per_s: (lat.length / elapsedMs) * 1000, p50_us: l.p50_us, p99_us: l.p99_us, step_p50_us: st.p50_us, cpu_us_per_op: perOp((u) => u.cpuUs), writes_per_op: perOp((u) => u.writes) };
}
