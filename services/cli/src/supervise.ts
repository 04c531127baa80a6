import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { EXIT } from './context.js';
import { compactLog, ms } from './format.js';

/**
 * Process supervision for `shoal up`: one child OS process with its log
 * lines, readiness and stop, and the small process and port helpers.
 */
/** A failure of `shoal up` itself (not a Shoal protocol error): `error: <message>`, exit 1. */
export class UpError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.FAILED) {
    super(message);
    this.name = 'UpError';
  }
}

export type Kind = 'nats' | 'balancer' | 'node' | 'extra';

export interface Exit { code: number | null; signal: NodeJS.Signals | null }

/** One OS process of the local cluster, in its own process group. */
export class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<Exit>;
  exit: Exit | undefined;
  readonly tail: string[] = [];
  /** The service's 'listening' line (or, for nats, a synthetic one). */
  ready: Record<string, unknown> | undefined;
  pools: string[] = [];
  private readyWaiters: ((l: Record<string, unknown>) => void)[] = [];

  constructor(readonly name: string, readonly kind: Kind, cmd: string, args: string[], env: NodeJS.ProcessEnv, private readonly onLine: (c: Child, stream: 'out' | 'err', line: string) => void) {
    // detached: its own process group, so a terminal's Ctrl-C reaches only `shoal up`, which then
    // stops the children in order (nodes drain while NATS is still up), and a SIGKILL can take the
    // whole group (a node's own children included).
    // A Shoal service gets a lifeline: stdin is a pipe nobody writes to, which ends when `shoal up`
    // is gone however it went (SIGKILL included), and the service then stops as on SIGTERM
    // (@shoal/runtime onShutdown). nats-server cannot watch stdin: see stopStaleNats.
    const lifeline = kind !== 'nats';
    this.proc = spawn(cmd, args, {
      env: lifeline ? { ...env, SHOAL_LIFELINE: '1' } : env,
      detached: true,
      stdio: [lifeline ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    this.proc.stdin?.on('error', () => { /* the child is gone: its exit is reported */ });
    this.exited = new Promise((res) => {
      this.proc.once('exit', (code, signal) => { this.exit = { code, signal }; res(this.exit); });
      this.proc.once('error', (err) => { this.tail.push(err.message); if (!this.exit) { this.exit = { code: null, signal: null }; res(this.exit); } });
    });
    this.lines(this.proc.stdout!, 'out');
    this.lines(this.proc.stderr!, 'err');
  }

  get pid(): number | undefined { return this.proc.pid; }
  get running(): boolean { return this.exit === undefined && this.proc.pid !== undefined; }

  private lines(stream: NodeJS.ReadableStream, kind: 'out' | 'err'): void {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).replace(/\r$/, '');
        buf = buf.slice(i + 1);
        if (line) this.line(kind, line);
      }
    });
    stream.on('end', () => { if (buf) this.line(kind, buf); buf = ''; });
  }

  private line(kind: 'out' | 'err', line: string): void {
    if (kind === 'err' || /"level":"(warn|error)"/.test(line)) { this.tail.push(line); if (this.tail.length > 20) this.tail.shift(); }
    if (kind === 'out' && line.startsWith('{')) {
      try {
        const rec = JSON.parse(line) as Record<string, unknown>;
        if (this.kind === 'node' && rec.msg === 'pool-node ready' && Array.isArray(rec.pools)) this.pools = rec.pools.map(String);
        if (rec.msg === 'listening') this.markReady(rec);
      } catch { /* not JSON: printed as is */ }
    }
    this.onLine(this, kind, line);
  }

  markReady(rec: Record<string, unknown>): void {
    if (this.ready) return;
    this.ready = rec;
    for (const w of this.readyWaiters.splice(0)) w(rec);
  }

  /** The 'listening' line; rejects if the process exits first or the deadline passes. */
  waitReady(timeoutMs: number): Promise<Record<string, unknown>> {
    if (this.ready) return Promise.resolve(this.ready);
    return new Promise((resolveReady, reject) => {
      const t = setTimeout(() => reject(new UpError(`${this.name} did not become ready within ${ms(timeoutMs)}${this.lastError()}`)), timeoutMs);
      this.readyWaiters.push((l) => { clearTimeout(t); resolveReady(l); });
      void this.exited.then((e) => { clearTimeout(t); reject(new UpError(`${this.name} exited during start (${describeExit(e)})${this.lastError()}`)); });
    });
  }

  lastError(): string {
    const last = this.tail.at(-1);
    if (!last) return '';
    const compact = last.startsWith('{') ? compactLog(last).text : last.replace(/^\[\d+\] [\d/]+ [\d:.]+ /, '');
    return `: ${compact.slice(0, 300)}`;
  }

  signal(sig: NodeJS.Signals, group = false): void {
    if (this.proc.pid === undefined) return;
    try {
      if (group) process.kill(-this.proc.pid, sig);
      else if (this.running) this.proc.kill(sig);
    } catch { /* gone already */ }
  }

  /** Send `sig`, wait up to `ms`, then SIGKILL the process group; resolves when it has exited. */
  async stop(sig: NodeJS.Signals, graceMs: number): Promise<Exit> {
    if (this.running) {
      this.signal(sig);
      let t: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => { t = setTimeout(() => r('late'), graceMs); });
      if ((await Promise.race([this.exited, late])) === 'late') this.signal('SIGKILL', true);
      clearTimeout(t);
    }
    const e = await this.exited;
    // Anything it left in its process group (a driver's children) goes too.
    this.signal('SIGKILL', true);
    return e;
  }
}

export function describeExit(e: Exit): string {
  return e.signal ? `signal ${e.signal}` : `exit code ${e.code}`;
}

/** Find an executable: an explicit path, or a name looked up in PATH and the sbin directories (Debian puts nats-server in /usr/sbin). */
export function findExecutable(nameOrPath: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const ok = (p: string) => { try { accessSync(p, constants.X_OK); return true; } catch { return false; } };
  if (nameOrPath.includes('/')) return ok(nameOrPath) ? resolve(nameOrPath) : undefined;
  const dirs = [...(env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'].filter(Boolean);
  for (const d of dirs) if (ok(join(d, nameOrPath))) return join(d, nameOrPath);
  return undefined;
}

/** Resolves true if `port` on `host` can be bound right now. */
export function portFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => res(true)));
  });
}

export function canConnect(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = netConnect({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); res(true); });
    s.once('error', () => res(false));
  });
}

export const sleep = (n: number) => new Promise((r) => setTimeout(r, n));

/** The command line of a live process (zombies count as gone), or undefined. */
export function commandOf(pid: number): string | undefined {
  try {
    const out = execFileSync('ps', ['-p', String(pid), '-o', 'stat=,args='], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const m = /^(\S+)\s+(.*)$/.exec(out);
    if (!m || m[1]!.startsWith('Z')) return undefined;
    return m[2];
  } catch {
    return undefined;
  }
}
