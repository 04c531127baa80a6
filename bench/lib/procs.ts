/**
 * Child processes of the benchmark: every one is registered here and killed
 * when the benchmark ends, fails, or is interrupted (Ctrl-C, SIGTERM).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onJsonLines } from '../../test/helpers/json-lines.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Child {
  name: string;
  proc: ChildProcess;
  /** JSON lines the child printed on stdout (non-JSON lines as {raw}). */
  logs: Record<string, unknown>[];
  stderr(): string;
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
  /** Signal the child and wait for it; SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

const children = new Set<ChildProcess>();
const extraKills = new Set<() => void>();

/** Register something else to kill synchronously on exit (e.g. the nats-server). */
export function onExitKill(kill: () => void): () => void {
  extraKills.add(kill);
  return () => extraKills.delete(kill);
}

function killAllNow(): void {
  for (const p of children) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const k of extraKills) { try { k(); } catch { /* already gone */ } }
}
process.on('exit', killAllNow);

const registry = new Set<Child>();

/** Stop every child still running (SIGTERM, then SIGKILL after graceMs). */
export async function stopAll(graceMs = 3000): Promise<void> {
  await Promise.all([...registry].map((c) => c.stop('SIGTERM', graceMs)));
}

/**
 * Start `node [nodeArgs] <script> [args]` (script relative to the repo root, or absolute) from the repo root with a clean
 * environment (PATH, HOME and `env`); stdout is parsed as JSON lines.
 */
export function spawnNode(name: string, script: string, opts: { env?: Record<string, string>; args?: string[]; nodeArgs?: string[] } = {}): Child {
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), resolve(ROOT, script), ...(opts.args ?? [])], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  const logs: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let err = '';
  onJsonLines(proc.stdout!, (rec) => {
    if (logs.length < 10_000) logs.push(rec);
    for (const w of [...waiters]) if (w.pred(rec)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(rec); }
  });
  proc.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-20_000); });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => { children.delete(proc); resolve(code); }));
  const child: Child = {
    name,
    proc,
    logs,
    stderr: () => err,
    exited,
    waitFor(pred, timeoutMs = 15_000) {
      const hit = logs.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${name}: no matching log line within ${timeoutMs} ms; stderr: ${err.slice(-1500)}`)), timeoutMs);
        waiters.push({ pred, resolve: (l) => { clearTimeout(t); resolve(l); } });
        void exited.then((code) => { clearTimeout(t); reject(new Error(`${name} exited (${code}) before it was ready: ${err.slice(-1500)}`)); });
      });
    },
    async stop(signal = 'SIGTERM', graceMs = 3000) {
      registry.delete(child);
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
  registry.add(child);
  return child;
}

/**
 * Run `cleanup` once on SIGINT/SIGTERM, then exit 130; a second signal kills
 * every child at once and exits.
 */
export function onInterrupt(cleanup: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: NodeJS.Signals) => {
    if (stopping) { killAllNow(); process.exit(130); }
    stopping = true;
    process.stderr.write(`\nbench: ${sig}, stopping child processes\n`);
    const hard = setTimeout(() => { killAllNow(); process.exit(130); }, 5000);
    void cleanup().finally(() => { clearTimeout(hard); process.exit(130); });
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
