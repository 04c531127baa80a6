/**
 * Where a cycle's time goes, per process: CPU time (user + system, from
 * /proc/<pid>/stat) and write/read system calls (from /proc/<pid>/io).
 * Linux only; NaN elsewhere or when the process is gone.
 */
import { readFileSync } from 'node:fs';

const TICK_US = 1_000_000 / 100; // USER_HZ is 100 on Linux

export interface ProcSample { cpuUs: number; writes: number; reads: number }

function cpuUs(pid: number): number {
  if (pid === process.pid) {
    const u = process.cpuUsage();
    return u.user + u.system;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" that closes the command name; utime and stime are fields 14 and 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_US;
  } catch {
    return NaN;
  }
}

function io(pid: number): { writes: number; reads: number } {
  try {
    const txt = readFileSync(`/proc/${pid}/io`, 'utf8');
    const get = (k: string) => Number(new RegExp(`^${k}: (\\d+)`, 'm').exec(txt)?.[1] ?? NaN);
    return { writes: get('syscw'), reads: get('syscr') };
  } catch {
    return { writes: NaN, reads: NaN };
  }
}

export function sample(pid: number): ProcSample {
  return { cpuUs: cpuUs(pid), ...io(pid) };
}

/** Snapshot several processes; call the result for each one's usage since the snapshot. */
export function procMeter(pids: Record<string, number | undefined>): () => Record<string, ProcSample> {
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, pid === undefined ? undefined : sample(pid)]));
  return () => Object.fromEntries(Object.entries(pids).map(([k, pid]) => {
    const a = start[k];
    if (pid === undefined || !a) return [k, { cpuUs: NaN, writes: NaN, reads: NaN }];
    const b = sample(pid);
    return [k, { cpuUs: b.cpuUs - a.cpuUs, writes: b.writes - a.writes, reads: b.reads - a.reads }];
  }));
}
