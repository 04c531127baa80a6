import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onJsonLines } from './json-lines.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A service started as its own OS process, with its JSON log lines collected. */
export interface Service {
  proc: ChildProcess;
  logs: Record<string, unknown>[];
  stderr: string;
  /** Resolves with the first log line matching, or rejects after timeoutMs. */
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

const running = new Set<ChildProcess>();
// Never leave a child behind, whatever the test did.
process.on('exit', () => { for (const p of running) p.kill('SIGKILL'); });

export function startService(script: string, env: Record<string, string>, args: string[] = []): Service {
  const proc = spawn(process.execPath, [join(ROOT, script), ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  const logs: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  onJsonLines(proc.stdout!, (rec) => {
    logs.push(rec);
    for (const w of [...waiters]) if (w.pred(rec)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(rec); }
  });
  const svc: Service = {
    proc,
    logs,
    stderr: '',
    exited: new Promise((resolve) => proc.once('exit', (code) => { running.delete(proc); resolve(code); })),
    waitFor(pred, timeoutMs = 15_000) {
      const hit = logs.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${script}: no matching log line within ${timeoutMs} ms; stderr: ${svc.stderr.slice(-2000)}; last logs: ${JSON.stringify(logs.slice(-5))}`)), timeoutMs);
        waiters.push({ pred, resolve: (l) => { clearTimeout(t); resolve(l); } });
        void svc.exited.then(() => { clearTimeout(t); reject(new Error(`${script} exited (${proc.exitCode}): ${svc.stderr.slice(-2000)}`)); });
      });
    },
    async kill(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return svc.exited;
    },
  };
  proc.stderr!.on('data', (d: Buffer) => { svc.stderr += d.toString(); });
  return svc;
}

/** Start a pool-node and wait until it is listening; its config comes from env and an optional YAML file. */
export async function startPoolNode(env: Record<string, string>): Promise<Service & { nodeId: string; httpPort: number | null }> {
  const svc = startService('services/pool-node/dist/main.js', { SHOAL_HTTP_PORT: '0', SHOAL_LOG_LEVEL: 'info', ...env });
  const line = await svc.waitFor((l) => l.msg === 'listening');
  return Object.assign(svc, { nodeId: String(line.nodeId), httpPort: (line.httpPort as number | null) ?? null });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `p`'s value, or 'hung' if it has not settled within `ms`. Unlike a race
 * with `sleep`, the timer goes with the answer: it cannot keep the test run
 * alive after its last test.
 */
export async function orHung<T>(p: Promise<T>, ms: number): Promise<T | 'hung'> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<'hung'>((r) => { t = setTimeout(() => r('hung'), ms); })]);
  } finally {
    clearTimeout(t);
  }
}

/**
 * Poll `cond` until it holds: how a test waits for something to happen
 * (never a guessed sleep). The deadline is generous and only means "it hung".
 */
/**
 * Poll `fn` every `everyMs` until it returns a truthy value (returned) or
 * `ms` pass; a throw counts as "not yet" and its message is kept for the
 * final error. For things that come up over seconds (containers, servers).
 */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined | false>, ms: number, everyMs = 500): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) { last = err; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}

export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`gave up after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** What a `shoal` CLI run printed and how it ended. */
export interface ShoalRun { code: number | null; stdout: string; stderr: string }

/** Run one `shoal` command to its end (bounded; killed past `timeoutMs`). */
export function runShoal(args: string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<ShoalRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin/shoal.js'), ...args], { env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`shoal ${args.join(' ')} did not finish in ${timeoutMs} ms; stderr: ${stderr}`)); }, timeoutMs);
    p.once('exit', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}
