import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ErrorCodes, ShoalError } from '@shoal/protocol';
import { LineReader, Tail, type CliMessage } from './lines.js';

/**
 * One CLI process: spawned in its own process group, stdout read as JSON
 * lines, stderr's tail kept, control requests matched to their responses,
 * and a stop sequence that always ends with the process (and anything it
 * started) gone and reaped. It knows nothing of turns; the session does.
 */

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be spawned at all (ENOENT, EACCES). */
  error?: string;
}

export interface SpawnSpec {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  stderrTailBytes: number;
}

/** Stop sequence of the issue: stdin EOF, SIGTERM after 2 s, SIGKILL 5 s later. */
export const STOP_GRACE_MS = 2_000;
export const STOP_TERM_MS = 5_000;

/** Every live CLI process of this node, killed synchronously if the node exits without destroying them. */
const live = new Set<CliProcess>();
let exitHook = false;
function watchNodeExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => { for (const p of live) p.killGroup('SIGKILL'); });
}

interface PendingControl {
  resolve: (m: CliMessage) => void;
  reject: (e: ShoalError) => void;
}

export class CliProcess {
  readonly child: ChildProcess;
  readonly stderr: Tail;
  readonly reader: LineReader;
  /** Resolves when the process has exited and its output is read (or shortly after exit if a grandchild holds the pipe). */
  readonly done: Promise<ExitInfo>;
  exit: ExitInfo | undefined;
  private readonly controls = new Map<string, PendingControl>();
  private reqSeq = 0;
  private readonly reqSuffix = randomBytes(4).toString('hex');
  private stopping: Promise<ExitInfo> | undefined;

  /**
   * `onMessage` gets each stdout JSON line in order; `onChunkEnd` is called
   * after the lines of one stdout read were delivered (for batching).
   */
  constructor(spec: SpawnSpec, private readonly onMessage: (m: CliMessage, line: string) => void, hooks: { onSkip?: () => void; onChunkEnd?: () => void } = {}) {
    watchNodeExit();
    this.stderr = new Tail(spec.stderrTailBytes);
    this.reader = new LineReader((m, line) => this.dispatch(m, line), undefined, hooks.onSkip);
    // Own process group: the stop sequence signals the CLI and whatever it started (tools, MCP servers).
    this.child = spawn(spec.command, spec.args, { cwd: spec.cwd, env: spec.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    live.add(this);
    const child = this.child;
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    const onChunkEnd = hooks.onChunkEnd;
    child.stdout!.on('data', onChunkEnd ? (d: string) => { this.reader.push(d); onChunkEnd(); } : (d: string) => this.reader.push(d));
    child.stderr!.on('data', (d: string) => this.stderr.push(d));
    // Writes to a dead process fail with EPIPE; the exit tells the story.
    child.stdin!.on('error', () => {});
    this.done = new Promise<ExitInfo>((resolve) => {
      let exited: ExitInfo | undefined;
      let closed = false;
      const finish = () => {
        if (!exited) return;
        live.delete(this);
        this.reader.end();
        this.exit = exited;
        for (const c of this.controls.values()) c.reject(this.exitError('before answering a control request'));
        this.controls.clear();
        resolve(exited);
      };
      child.once('error', (err: NodeJS.ErrnoException) => {
        // Spawn failed: no 'exit' follows.
        if (child.pid === undefined && !exited) { exited = { code: null, signal: null, error: `${err.code ?? 'spawn error'}: ${err.message}` }; finish(); }
      });
      child.once('exit', (code, signal) => {
        exited = { code, signal };
        if (closed) finish();
        // Output still in the pipe is read before we call it done, unless a grandchild keeps the pipe open.
        else setTimeout(finish, 250).unref();
      });
      child.once('close', () => { closed = true; if (exited) finish(); });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return this.exit === undefined && this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined;
  }

  write(msg: unknown): void {
    if (!this.child.stdin!.writable) return;
    this.child.stdin!.write(JSON.stringify(msg) + '\n');
  }

  /** Send a control request; resolves with the CLI's `control_response` (success), rejects on an error response or exit. */
  control(request: Record<string, unknown>): { requestId: string; response: Promise<CliMessage> } {
    const requestId = `req_${++this.reqSeq}_${this.reqSuffix}`;
    const response = new Promise<CliMessage>((resolve, reject) => {
      if (!this.alive) { reject(this.exitError('before a control request')); return; }
      this.controls.set(requestId, { resolve, reject });
    });
    this.write({ type: 'control_request', request_id: requestId, request });
    return { requestId, response };
  }

  private dispatch(m: CliMessage, line: string): void {
    if (m.type === 'control_response') {
      const r = (m.response ?? {}) as { subtype?: string; request_id?: string; error?: string };
      const pending = r.request_id !== undefined ? this.controls.get(r.request_id) : undefined;
      if (pending) {
        this.controls.delete(r.request_id!);
        if (r.subtype === 'error') pending.reject(new ShoalError(ErrorCodes.DRIVER_ERROR, `claude refused control request ${r.request_id}: ${r.error ?? 'error'}`));
        else pending.resolve(m);
      }
    }
    this.onMessage(m, line);
  }

  /** DRIVER_ERROR naming the exit code, signal and stderr tail. */
  exitError(when: string): ShoalError {
    const e = this.exit ?? { code: this.child.exitCode, signal: this.child.signalCode };
    const how = e.error ? `could not be started (${e.error})` : `exited (code ${e.code ?? 'none'}, signal ${e.signal ?? 'none'})`;
    const tail = this.stderr.toString().trim();
    return new ShoalError(ErrorCodes.DRIVER_ERROR, `claude process ${how} ${when}${tail ? `; stderr: ${tail.slice(-1000)}` : ''}`, {
      details: { exitCode: e.code, signal: e.signal, spawnError: e.error, stderrTail: tail, pid: this.child.pid },
    });
  }

  /** Signal the whole process group; false if there is none left. */
  killGroup(signal: NodeJS.Signals): boolean {
    const pid = this.child.pid;
    if (pid === undefined) return false;
    try {
      process.kill(-pid, signal);
      return true;
    } catch {
      // The group is gone (or was never made): fall back to the child itself.
      try { return this.child.kill(signal); } catch { return false; }
    }
  }

  /**
   * stdin EOF (the CLI exits on it), SIGTERM after `graceMs`, SIGKILL `termMs`
   * later; resolves once the process is reaped. Never rejects; idempotent.
   */
  stop(graceMs = STOP_GRACE_MS, termMs = STOP_TERM_MS): Promise<ExitInfo> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      const waitExit = (ms: number) => new Promise<boolean>((resolve) => {
        if (this.exit) { resolve(true); return; }
        const t = setTimeout(() => resolve(false), ms);
        void this.done.then(() => { clearTimeout(t); resolve(true); });
      });
      try { this.child.stdin!.end(); } catch { /* already closed */ }
      if (!(await waitExit(graceMs))) {
        this.killGroup('SIGTERM');
        if (!(await waitExit(termMs))) {
          this.killGroup('SIGKILL');
          await waitExit(10_000);
        }
      }
      // Whatever the CLI started and left behind goes with it.
      this.killGroup('SIGKILL');
      live.delete(this);
      return this.exit ?? { code: this.child.exitCode, signal: this.child.signalCode };
    })();
    return this.stopping;
  }

  /** Resident set size from /proc/<pid>/status (VmRSS), in bytes; undefined if unreadable. */
  async rss(): Promise<number | undefined> {
    const pid = this.child.pid;
    if (pid === undefined || !this.alive) return undefined;
    try {
      return parseVmRss(await readFile(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return undefined;
    }
  }
}

/** VmRSS of a /proc/<pid>/status text, in bytes. */
export function parseVmRss(status: string): number | undefined {
  const m = /^VmRSS:\s+(\d+)\s*kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : undefined;
}
