/**
 * The stand-in as a child process, for tests: start, control (faults, down,
 * up, counters), kill and restart on the same ports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Faults, StandInStats } from './server.js';
import type { SearchRecord } from './grpc.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const MAIN = join(ROOT, 'test', 'stand-ins', 'weaviate', 'main.ts');

const running = new Set<ChildProcess>();
process.on('exit', () => { for (const p of running) p.kill('SIGKILL'); });

export interface StandInProcess {
  httpPort: number;
  grpcPort: number;
  controlPort: number;
  proc: ChildProcess;
  stats(): Promise<StandInStats>;
  /** The last searches served: what arrived on the wire and what was answered. */
  searches(): Promise<SearchRecord[]>;
  faults(f: Partial<Faults>): Promise<Faults>;
  clearFaults(): Promise<void>;
  /** Stop listening (connections dropped), process stays. */
  down(): Promise<void>;
  up(): Promise<void>;
  resetCounters(): Promise<void>;
  /** Kill the process (SIGKILL by default: a crashed server). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Start a fresh process on the same ports (data is gone, as after a real restart without persistence). */
  restart(): Promise<StandInProcess>;
}

export async function spawnWeaviateStandIn(opts: { httpPort?: number; grpcPort?: number; controlPort?: number; apiKey?: string } = {}): Promise<StandInProcess> {
  const args = ['--import', 'tsx', MAIN];
  if (opts.httpPort) args.push('--http-port', String(opts.httpPort));
  if (opts.grpcPort) args.push('--grpc-port', String(opts.grpcPort));
  if (opts.controlPort) args.push('--control-port', String(opts.controlPort));
  if (opts.apiKey) args.push('--api-key', opts.apiKey);
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' } });
  running.add(proc);
  const exited = new Promise<void>((r) => proc.once('exit', () => { running.delete(proc); r(); }));
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const line = await new Promise<Record<string, number>>((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`weaviate stand-in did not start: ${stderr}`)), 15_000);
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) { clearTimeout(t); resolve(JSON.parse(buf.slice(0, i)) as Record<string, number>); }
    });
    proc.once('exit', (code) => { clearTimeout(t); reject(new Error(`weaviate stand-in exited (${code}): ${stderr}`)); });
  });
  const controlPort = line.controlPort!;
  const ctl = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const r = await fetch(`http://127.0.0.1:${controlPort}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    if (!r.ok) throw new Error(`stand-in control ${method} ${path}: ${r.status} ${await r.text()}`);
    return r.json() as Promise<T>;
  };
  const handle: StandInProcess = {
    httpPort: line.httpPort!,
    grpcPort: line.grpcPort!,
    controlPort,
    proc,
    stats: () => ctl('GET', '/stats'),
    searches: () => ctl('GET', '/searches'),
    faults: (f) => ctl('POST', '/faults', f),
    clearFaults: async () => { await ctl('POST', '/faults/clear'); },
    down: async () => { await ctl('POST', '/down'); },
    up: async () => { await ctl('POST', '/up'); },
    resetCounters: async () => { await ctl('POST', '/counters/reset'); },
    async kill(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
    async restart() {
      await handle.kill();
      return spawnWeaviateStandIn({ ...opts, httpPort: handle.httpPort, grpcPort: handle.grpcPort, controlPort });
    },
  };
  return handle;
}
