import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCodes, ShoalError } from '@shoal/protocol';
import { CliProcess, type ExitInfo } from './process.js';
import type { CliMessage } from './lines.js';
import type { Gate } from '../../turn-gate.js';
import { isApiRetry, isRateLimit, isResult, turnCost, type ResultLine } from './messages.js';
import { buildArgs, buildEnv, type ClaudeOptions, type LeaseChoice } from './options.js';

/**
 * One pooled Claude session: a CLI process (replaced on respawn) and the
 * turn state around it.
 *
 *   starting → idle ⇄ turn          (send: one user turn until its `result`)
 *                  ⇄ clearing      (reset: `/clear` until its `result` / `conversation_reset`)
 *             → dead               (the process exited, or the session was destroyed)
 *
 * Only one turn at a time: a `send` while a turn or a reset runs is
 * SESSION_BUSY. Every stdout line of a turn goes to that turn's `emit` in
 * order; the turn's `result` line is its final value.
 */
export type SessionState = 'starting' | 'idle' | 'turn' | 'clearing' | 'dead';

export type TurnOutcome = 'success' | 'error' | 'interrupted' | 'crashed' | 'cancelled' | 'stalled' | 'timeout';

export interface SessionHooks {
  /** A user turn (not a /clear) ended. `result` is the CLI's result line when there was one. */
  turnEnded(outcome: TurnOutcome, ms: number, result?: ResultLine, client?: string, costUsd?: number): void;
  /** The CLI retried an API call (`api_retry`): its HTTP status, null without a response; and the delay it announced. */
  apiRetry?(status: number | null, delayMs: number): void;
  /** The account's cap on turns at once (cluster-wide), if the pool has one. */
  gate?: Gate;
  stateChanged(from: SessionState, to: SessionState): void;
  /** A stdout line was not a JSON object (or too long) and was skipped. */
  skipped(): void;
  /** The hang watchdog fired: a silent turn (`turn`) or an unanswered control request (`control`). */
  stalled(stage: 'turn' | 'control', action: 'interrupted' | 'killed'): void;
  log(level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void;
}

interface Turn {
  kind: 'send' | 'clear';
  emit: (m: CliMessage | string) => void;
  /** Raw mode: the text of the lines of one stdout read, emitted together as one string. */
  text: string | undefined;
  startedAt: number;
  /** The holder gave up (abort) or asked to interrupt: the result still ends the turn. */
  interrupted: boolean;
  killTimer: NodeJS.Timeout | undefined;
  /** Hang watchdog (stall_timeout) and the turn's own deadline. */
  stallTimer: NodeJS.Timeout | undefined;
  deadlineTimer: NodeJS.Timeout | undefined;
  /** Why the turn was cut short by Shoal, for the metrics: the watchdog or the deadline. */
  cut: 'stalled' | 'timeout' | undefined;
  /** Text of the turn's assistant messages so far, and of the deltas since the last one (for a cut turn's error). */
  partial: string;
  delta: string;
  /** Events streamed so far. */
  events: number;
  /** The holder's client name, for cost per client. */
  client: string | undefined;
  /** Waiting for the account's cap: ends the turn before the CLI saw it. */
  dequeue?: (err: ShoalError) => void;
  /** Gives the account's slot back. */
  release?: () => void;
  /** Settles the caller's promise; idempotent. */
  settle(err: ShoalError | undefined, result?: CliMessage): void;
  /** Resolves when the turn is over, whatever the outcome (for reset/validate to wait on). */
  over: Promise<void>;
  finish(): void;
}

const now = () => performance.now();
const noop = () => {};
/** Lines of the stream kept for a stall report, and how much of each. */
const LAST_LINES = 5;
const LAST_LINE_CHARS = 500;

/** The text blocks of an `assistant` line. */
function textOf(m: CliMessage): string {
  const content = (m.message as { content?: unknown } | undefined)?.content;
  if (!Array.isArray(content)) return '';
  let out = '';
  for (const b of content as { type?: unknown; text?: unknown }[]) if (b?.type === 'text' && typeof b.text === 'string') out += b.text;
  return out;
}

/** The content of a `send`: a non-empty string or a list of content blocks (objects with a `type`). */
export function checkContent(content: unknown): string | Record<string, unknown>[] {
  if (typeof content === 'string' && content.length > 0) return content;
  if (Array.isArray(content) && content.length > 0 && content.every((b) => typeof b === 'object' && b !== null && !Array.isArray(b) && typeof (b as { type?: unknown }).type === 'string')) {
    return content as Record<string, unknown>[];
  }
  throw new ShoalError(ErrorCodes.BAD_REQUEST, 'send needs {content}: a non-empty string or a non-empty list of content blocks ({type: ...})');
}

export class ClaudeSession {
  state: SessionState = 'starting';
  /** The CLI's session id: chosen at spawn (--session-id), then as the CLI reports it (init, result, conversation_reset). */
  sessionId: string | undefined;
  model: string | undefined;
  /** User turns on this session (all processes) and since the last reset. */
  turns = 0;
  /** Whether the last send's result answered an interrupt (its `error_during_execution` is then the asked-for outcome). */
  lastTurnInterrupted = false;
  conversationTurns = 0;
  rssBytes = 0;
  private proc: CliProcess | undefined;
  private turn: Turn | undefined;
  private workDir: string | undefined;
  /** The session's own folder (its working directory unless `cwd` is fixed, and its private HOME), removed on destroy. */
  private root: string | undefined;
  /** With private_config: the CLI's HOME and CLAUDE_CONFIG_DIR, under `root`. */
  private home: { home: string; configDir: string } | undefined;
  /** Conversation ids of the current holder, whose transcripts a reset removes (and keeps removed). */
  private heldIds = new Set<string>();
  /** The options of the running process: the pool's, with a lease's choices that need a respawn. */
  private eff: ClaudeOptions;
  /** A lease's working directory (one of `lease_options.cwd`), for the running process. */
  private leaseCwd: string | undefined;
  /** Model and permission mode as set by control requests (undefined: the process's flags). */
  private liveModel: string | undefined;
  private liveMode: string | undefined;
  /** `total_cost_usd` of the conversation's last result: the CLI reports a running total. */
  private costTotal = 0;
  /** The last `rate_limit_event` seen (subscription limits), for `info`. */
  rateLimit: Record<string, unknown> | undefined;
  /** When stdout last said anything (hang watchdog). */
  private lastOutputAt = 0;
  /** The last lines of stdout, a ring, for a stall report. */
  private lastLines: string[] = [];
  private lastLineAt = 0;
  private closed = false;
  private starting: AbortController | undefined;
  private lastExit: ShoalError | undefined;

  constructor(
    readonly resourceId: string,
    private readonly opts: ClaudeOptions,
    private readonly command: string,
    private readonly hooks: SessionHooks,
  ) {
    this.eff = opts;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get alive(): boolean {
    return this.proc?.alive ?? false;
  }

  get nonJsonLines(): number {
    return this.proc?.reader.stats.nonJson ?? 0;
  }

  get stderrTail(): string {
    return this.proc?.stderr.toString() ?? '';
  }

  private setState(to: SessionState): void {
    if (this.state === to) return;
    const from = this.state;
    this.state = to;
    this.hooks.stateChanged(from, to);
  }

  // ---- process lifecycle ---------------------------------------------------

  /** Make the working directory and start the first process; honours `signal` (the pool's create timeout). */
  async start(signal: AbortSignal): Promise<void> {
    // mkdtemp makes the folder 0700: other users of the machine cannot look in.
    if (!this.opts.cwd || this.opts.privateConfig) {
      await mkdir(this.opts.cwdRoot, { recursive: true });
      this.root = await mkdtemp(join(this.opts.cwdRoot, 'session-'));
    }
    if (this.opts.cwd) {
      this.workDir = this.opts.cwd;
      await mkdir(this.workDir, { recursive: true });
    } else if (this.opts.privateConfig) {
      this.workDir = join(this.root!, 'work');
      await mkdir(this.workDir);
    } else {
      this.workDir = this.root;
    }
    if (this.opts.privateConfig) {
      const home = join(this.root!, 'home');
      this.home = { home, configDir: join(home, '.claude') };
      await mkdir(this.home.configDir, { recursive: true });
    }
    const first = this.opts.sessionId ?? (this.opts.resume && !this.opts.forkSession ? this.opts.resume : randomUUID());
    try {
      await this.spawn({ sessionId: first }, signal);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /**
   * Spawn a process and wait for `initialize` to be answered. Rejects with
   * DRIVER_ERROR (exit code, signal, stderr) if it exits first, or with the
   * abort reason if `signal` aborts (the process is then stopped).
   */
  private async spawn(run: { sessionId: string; resume?: string }, signal?: AbortSignal): Promise<void> {
    if (this.closed) throw new ShoalError(ErrorCodes.DRIVER_ERROR, 'session destroyed');
    this.setState('starting');
    const ac = new AbortController();
    this.starting = ac;
    const onAbort = () => ac.abort(signal?.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    const args = buildArgs(this.eff, { sessionId: run.sessionId, resume: run.resume });
    const proc = new CliProcess({ command: this.command, args, env: buildEnv(this.opts, process.env, this.home), cwd: this.leaseCwd ?? this.workDir!, stderrTailBytes: this.opts.stderrTailBytes }, (m, line) => this.onMessage(proc, m, line), { onSkip: () => this.hooks.skipped(), onChunkEnd: () => this.onChunk(proc) });
    this.proc = proc;
    this.sessionId = run.sessionId;
    this.heldIds.add(run.sessionId);
    this.costTotal = 0;
    void proc.done.then((e) => this.onExit(proc, e));
    try {
      await new Promise<void>((resolve, reject) => {
        if (ac.signal.aborted) { reject(ac.signal.reason); return; }
        const abort = () => reject(ac.signal.reason ?? new ShoalError(ErrorCodes.CANCELLED, 'start aborted'));
        ac.signal.addEventListener('abort', abort, { once: true });
        proc.control({ subtype: 'initialize', hooks: null }).response.then(
          () => { ac.signal.removeEventListener('abort', abort); resolve(); },
          (err: ShoalError) => {
            ac.signal.removeEventListener('abort', abort);
            // An error response from a live process, or the process died: then say how (code, signal, stderr).
            if (proc.alive) reject(err); else void proc.done.then(() => reject(proc.exitError('before answering initialize')));
          },
        );
      });
    } catch (err) {
      await proc.stop(0, 1000);
      if (this.proc === proc) this.setState('dead');
      throw err instanceof ShoalError ? err : new ShoalError(ErrorCodes.DRIVER_ERROR, `claude start failed: ${(err as Error)?.message ?? String(err)}`);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (this.starting === ac) this.starting = undefined;
    }
    if (this.closed) { await proc.stop(this.opts.stopGraceMs, this.opts.stopKillAfterMs); throw new ShoalError(ErrorCodes.DRIVER_ERROR, 'session destroyed while starting'); }
    this.lastExit = undefined;
    this.setState('idle');
    await this.refreshRss();
  }

  /** Respawns in progress, in order: two must never overlap (a slow `resume` and a `reset`). */
  private respawning: Promise<unknown> = Promise.resolve();

  /** Replace the process with a fresh one (a new conversation, or `resume`), after any respawn under way. */
  respawn(resume?: string): Promise<void> {
    const run = this.respawning.then(() => this.replaceProcess(resume), () => this.replaceProcess(resume));
    this.respawning = run.catch(() => {});
    return run;
  }

  private async replaceProcess(resume?: string): Promise<void> {
    const old = this.proc;
    this.failTurn(new ShoalError(ErrorCodes.DRIVER_ERROR, 'session respawned'));
    this.setState('starting');
    // Detach the old process first: its exit is no news.
    this.proc = undefined;
    if (old) await old.stop(this.opts.stopGraceMs, this.opts.stopKillAfterMs);
    const sessionId = resume && !this.opts.forkSession ? resume : randomUUID();
    await this.spawn({ sessionId, resume });
    this.conversationTurns = 0;
  }

  /**
   * The `resume` op: continue conversation `id` (from the shared session
   * store) on a fresh process. If the CLI cannot resume it, the session gets
   * a fresh conversation and the op fails with the CLI's reason.
   */
  async resume(id: string): Promise<void> {
    if (this.state !== 'idle') throw this.busy('resume');
    try {
      await this.respawn(id);
    } catch (err) {
      await this.respawn().catch(() => {});
      throw err;
    }
  }

  private onExit(proc: CliProcess, e: ExitInfo): void {
    if (this.proc !== proc) return;
    const err = proc.exitError(this.turn ? 'mid-turn' : this.state === 'starting' ? 'while starting' : 'while idle');
    this.lastExit = err;
    this.rssBytes = 0;
    if (!this.closed) this.hooks.log(this.turn ? 'warn' : 'info', 'claude process exited', { resourceId: this.resourceId, sessionId: this.sessionId, code: e.code, signal: e.signal, err: e.error });
    if (this.turn) {
      const t = this.turn;
      this.flushText();
      if (t.kind === 'send') this.hooks.turnEnded(t.cut ?? (t.interrupted ? 'cancelled' : 'crashed'), now() - t.startedAt);
      t.settle(err);
      this.endTurn(t);
    }
    // A process replaced by a respawn in progress is not the session's death.
    if (this.state !== 'starting') this.setState('dead');
  }

  /** Destroy: stop the process (stdin EOF, SIGTERM after 2 s, SIGKILL 5 s later), remove the working directory. Never throws. */
  async close(): Promise<void> {
    this.closed = true;
    this.starting?.abort(new ShoalError(ErrorCodes.DRIVER_ERROR, 'session destroyed while starting'));
    this.failTurn(new ShoalError(ErrorCodes.DRIVER_ERROR, 'session destroyed'));
    const proc = this.proc;
    if (proc) await proc.stop(this.opts.stopGraceMs, this.opts.stopKillAfterMs);
    this.setState('dead');
    if (this.root) await rm(this.root, { recursive: true, force: true }).catch(() => {});
    this.root = undefined;
  }

  async refreshRss(): Promise<number> {
    const rss = await this.proc?.rss();
    if (rss !== undefined) this.rssBytes = rss;
    else if (!this.alive) this.rssBytes = 0;
    return this.rssBytes;
  }

  // ---- per-lease options ------------------------------------------------

  /**
   * Make the session what a lease asked for (checked against the allow-list
   * already), or the pool's defaults again (`undefined`). Model and
   * permission mode go through the CLI's `set_model` / `set_permission_mode`
   * control requests; the system prompt, tools and working directory exist
   * only as flags, so they respawn the process.
   *
   * `keep` (a parked conversation claimed with its key): such a respawn
   * resumes the conversation (`--resume=<id>`) rather than starting afresh.
   * False when that could not be done: the CLI saved no transcript
   * (`session_persistence: false`), the lease moves it to another working
   * directory (the CLI finds conversations under their directory only), or
   * the CLI could not resume it (it then runs a fresh one).
   */
  async applyLease(c: LeaseChoice | undefined, keep = false): Promise<boolean> {
    if (this.state !== 'idle') throw this.busy('per-lease options');
    const o = this.opts;
    const want = {
      model: c?.model ?? o.model, mode: c?.permissionMode ?? o.permissionMode,
      append: c?.appendSystemPrompt ?? o.appendSystemPrompt, tools: c?.allowedTools ?? o.allowedTools, cwd: c?.cwd,
    };
    const flagsChange = want.append !== this.eff.appendSystemPrompt || want.tools.join(',') !== this.eff.allowedTools.join(',') || want.cwd !== this.leaseCwd;
    if (flagsChange) {
      const had = keep && this.conversationTurns > 0 ? this.sessionId : undefined;
      const resume = had !== undefined && this.opts.sessionPersistence && want.cwd === this.leaseCwd ? had : undefined;
      const turns = this.conversationTurns;
      const eff: ClaudeOptions = { ...o, allowedTools: want.tools };
      if (want.append !== undefined) eff.appendSystemPrompt = want.append; else delete eff.appendSystemPrompt;
      if (want.model !== undefined) eff.model = want.model; else delete eff.model;
      if (want.mode !== undefined) eff.permissionMode = want.mode; else delete eff.permissionMode;
      this.eff = eff;
      this.leaseCwd = want.cwd;
      this.liveModel = this.liveMode = undefined;
      let resumed = false;
      if (resume !== undefined) {
        try {
          await this.respawn(resume);
          this.conversationTurns = turns;
          resumed = true;
        } catch (err) {
          this.hooks.log('warn', 'claude could not resume the parked conversation with the lease\'s options; starting a fresh one', { resourceId: this.resourceId, sessionId: resume, err: (err as Error).message });
        }
      }
      if (!resumed) await this.respawn();
      this.model = want.model ?? this.model;
      return had === undefined || resumed;
    }
    const model = this.liveModel ?? this.eff.model;
    if (want.model !== model) {
      await this.ask({ subtype: 'set_model', model: want.model ?? 'default' });
      this.liveModel = want.model ?? 'default';
      this.model = want.model ?? this.model;
    }
    const mode = this.liveMode ?? this.eff.permissionMode ?? 'default';
    if ((want.mode ?? 'default') !== mode) {
      await this.ask({ subtype: 'set_permission_mode', mode: want.mode ?? 'default' });
      this.liveMode = want.mode ?? 'default';
    }
    return true;
  }

  /**
   * A control request that must be answered within `interrupt_timeout`; a
   * CLI that does not answer is hung: killed (the pool replaces it), and the
   * caller gets SESSION_STALLED.
   */
  private async ask(request: Record<string, unknown>): Promise<void> {
    const proc = this.proc;
    if (!proc || !this.alive) throw this.deadError();
    const { response } = proc.control(request);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), this.opts.interruptTimeoutMs); });
    try {
      if ((await Promise.race([response, late])) === 'late') {
        this.hooks.stalled('control', 'killed');
        this.hooks.log('warn', 'claude did not answer a control request in time; killing it', { resourceId: this.resourceId, request: request.subtype, timeoutMs: this.opts.interruptTimeoutMs });
        proc.killGroup('SIGKILL');
        throw new ShoalError(ErrorCodes.SESSION_STALLED, `claude session ${this.sessionId} did not answer ${String(request.subtype)} within ${this.opts.interruptTimeoutMs} ms; killed`, { details: { retryable: true, request: request.subtype, lastLines: this.recentLines() } });
      }
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- turns -------------------------------------------------------------

  private busy(what: string): ShoalError {
    const doing = this.state === 'turn' ? 'is running a turn' : this.state === 'clearing' ? 'is being reset' : this.state === 'starting' ? 'is starting' : `is ${this.state}`;
    return new ShoalError(ErrorCodes.SESSION_BUSY, `claude session ${this.sessionId ?? this.resourceId} ${doing}; ${what} refused`, { details: { state: this.state, sessionId: this.sessionId } });
  }

  private deadError(): ShoalError {
    return this.lastExit ?? new ShoalError(ErrorCodes.DRIVER_ERROR, `claude session ${this.sessionId ?? this.resourceId} has no running process`);
  }

  /**
   * One user turn: write the message, stream every line through `emit`,
   * resolve with the `result` line. `signal` aborting (the holder gave up,
   * the lease ended) interrupts the turn and rejects at once; so do the
   * turn's own deadline (`timeoutMs`: TURN_TIMEOUT with what streamed so far)
   * and the hang watchdog (`stall_timeout`: SESSION_STALLED with the last
   * lines). The session becomes idle when the CLI's result arrives, or is
   * killed if it does not come within `interrupt_timeout`.
   */
  send(content: unknown, emit: Turn['emit'], signal?: AbortSignal, raw = false, timeoutMs?: number, client?: string, waited = false): Promise<CliMessage> {
    const body = checkContent(content);
    // A turn already given up (its caller got TURN_TIMEOUT, SESSION_STALLED or CANCELLED) is ending: wait for it rather than refuse.
    if (!waited && this.turn?.interrupted) {
      return this.settled(this.opts.interruptTimeoutMs + 500).then(() => this.send(content, emit, signal, raw, timeoutMs, client, true));
    }
    if (this.state === 'dead' || !this.alive) return Promise.reject(this.deadError());
    if (this.state !== 'idle') return Promise.reject(this.busy('send'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const p = this.begin('send', emit, raw);
    const t = this.turn!;
    t.client = client;
    const go = () => {
      if (raw) this.proc!.reader.raw = (line) => { if (this.turn === t) { t.text += line + '\n'; this.keepLine(line); } };
      this.proc!.write({ type: 'user', message: { role: 'user', content: body }, parent_tool_use_id: null, session_id: 'default' });
      this.turns++;
      this.conversationTurns++;
      this.lastOutputAt = now();
      if (this.opts.stallTimeoutMs > 0) this.watch(t, this.opts.stallTimeoutMs);
    };
    const gate = this.hooks.gate;
    if (!gate) go();
    else {
      // The account's cap: wait for a slot (fairly per client) before the CLI sees the message.
      const ac = new AbortController();
      t.dequeue = (err) => {
        ac.abort(err);
        if (this.turn !== t) return;
        this.hooks.turnEnded(err.code === ErrorCodes.TURN_TIMEOUT ? 'timeout' : 'cancelled', now() - t.startedAt, undefined, t.client, 0);
        t.settle(err);
        this.endTurn(t);
        this.setState('idle');
      };
      gate.acquire(client, ac.signal).then((release) => {
        if (this.turn !== t || !this.alive) { release(); return; }
        t.release = release;
        t.dequeue = undefined;
        go();
      }, () => { /* gave up waiting: dequeue ended the turn */ });
    }
    if (timeoutMs !== undefined && timeoutMs > 0) {
      t.deadlineTimer = setTimeout(() => this.cut(t, 'timeout', new ShoalError(ErrorCodes.TURN_TIMEOUT,
        `claude turn took longer than its deadline of ${timeoutMs} ms${t.dequeue ? ' (still waiting for the account\'s turn cap)' : '; interrupted'}`, { details: { retryable: false, timeoutMs, sessionId: this.sessionId, partialText: t.partial + t.delta, events: t.events } })), timeoutMs);
    }
    if (signal) {
      const onAbort = () => {
        if (this.turn !== t) return;
        const err = signal.reason instanceof ShoalError ? signal.reason : new ShoalError(ErrorCodes.CANCELLED, 'turn cancelled');
        if (t.dequeue) { t.dequeue(err); return; }
        t.emit = noop;
        t.settle(err);
        void this.interruptTurn(t);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      void t.over.then(() => signal.removeEventListener('abort', onAbort));
    }
    return p;
  }

  /** Hang watchdog: one timer per turn, re-armed for the rest of the window instead of on every line. */
  private watch(t: Turn, stallMs: number): void {
    const check = () => {
      if (this.turn !== t || t.interrupted) return;
      const quiet = now() - this.lastOutputAt;
      if (quiet < stallMs) { t.stallTimer = setTimeout(check, Math.max(10, stallMs - quiet)); return; }
      this.hooks.stalled('turn', 'interrupted');
      this.hooks.log('warn', 'claude turn silent for stall_timeout; interrupting it', { resourceId: this.resourceId, sessionId: this.sessionId, stallMs, pid: this.pid });
      this.cut(t, 'stalled', new ShoalError(ErrorCodes.SESSION_STALLED, `claude session ${this.sessionId} printed nothing for ${Math.round(quiet)} ms (stall_timeout ${stallMs} ms); the turn was interrupted and the session is replaced if it stays silent`, {
        details: { retryable: true, stalledMs: Math.round(quiet), stallTimeoutMs: stallMs, sessionId: this.sessionId, lastLines: this.recentLines(), partialText: t.partial + t.delta, events: t.events },
      }));
    };
    t.stallTimer = setTimeout(check, stallMs);
  }

  /** Shoal ends a turn early: the caller gets `err` now, the CLI is interrupted (killed if it does not end the turn). */
  private cut(t: Turn, why: 'stalled' | 'timeout', err: ShoalError): void {
    if (this.turn !== t || t.cut) return;
    if (t.dequeue) { t.dequeue(err); return; }
    t.cut = why;
    this.flushText();
    t.emit = noop;
    t.settle(err);
    void this.interruptTurn(t);
  }

  private keepLine(line: string): void {
    this.lastLines[this.lastLineAt++ % LAST_LINES] = line;
  }

  /** The last lines of stdout, oldest first, each cut to a readable length. */
  recentLines(): string[] {
    const out: string[] = [];
    for (let i = Math.max(0, this.lastLineAt - LAST_LINES); i < this.lastLineAt; i++) {
      const l = this.lastLines[i % LAST_LINES] ?? '';
      out.push(l.length > LAST_LINE_CHARS ? l.slice(0, LAST_LINE_CHARS) + '…' : l);
    }
    return out;
  }

  private onChunk(proc: CliProcess): void {
    if (this.proc !== proc) return;
    this.lastOutputAt = now();
    this.flushText();
  }

  private begin(kind: Turn['kind'], emit: Turn['emit'], raw = false): Promise<CliMessage> {
    let resolveOver!: () => void;
    const over = new Promise<void>((r) => { resolveOver = r; });
    return new Promise<CliMessage>((resolve, reject) => {
      let settled = false;
      const t: Turn = {
        kind, emit, text: raw ? '' : undefined, startedAt: now(), interrupted: false, killTimer: undefined, stallTimer: undefined, deadlineTimer: undefined, cut: undefined,
        partial: '', delta: '', events: 0, client: undefined, over,
        settle: (err, result) => {
          if (settled) return;
          settled = true;
          if (err) reject(err); else resolve(result!);
        },
        finish: resolveOver,
      };
      this.turn = t;
      this.setState(kind === 'send' ? 'turn' : 'clearing');
    });
  }

  private endTurn(t: Turn): void {
    t.release?.();
    t.release = undefined;
    clearTimeout(t.killTimer);
    clearTimeout(t.stallTimer);
    clearTimeout(t.deadlineTimer);
    if (this.turn === t) {
      this.turn = undefined;
      if (this.proc) this.proc.reader.raw = undefined;
    }
    t.finish();
  }

  private failTurn(err: ShoalError): void {
    const t = this.turn;
    if (!t) return;
    if (t.kind === 'send') this.hooks.turnEnded('cancelled', now() - t.startedAt);
    t.settle(err);
    this.endTurn(t);
  }

  /** The `interrupt` op: stop the running turn (its `send` then ends with the CLI's error_during_execution result). */
  async interrupt(): Promise<{ interrupted: boolean }> {
    const t = this.turn;
    if (!t || t.kind !== 'send') return { interrupted: false };
    await this.interruptTurn(t);
    return { interrupted: true };
  }

  /** Ask the CLI to interrupt; if the turn is not over within `interrupt_timeout`, kill the process (the session is then dead and replaced). */
  private async interruptTurn(t: Turn): Promise<void> {
    if (t.interrupted) return;
    t.interrupted = true;
    const proc = this.proc;
    if (!proc) return;
    t.killTimer = setTimeout(() => {
      if (this.turn !== t) return;
      if (t.cut === 'stalled') this.hooks.stalled('turn', 'killed');
      this.hooks.log('warn', 'claude did not end an interrupted turn in time; killing it', { resourceId: this.resourceId, sessionId: this.sessionId, timeoutMs: this.opts.interruptTimeoutMs, stalled: t.cut === 'stalled' });
      proc.killGroup('SIGKILL');
    }, this.opts.interruptTimeoutMs);
    try {
      await proc.control({ subtype: 'interrupt' }).response;
    } catch {
      // Refused or the process died: the kill timer or the exit ends the turn.
    }
  }

  /** Wait until no turn runs, at most `ms`; true if idle. */
  async settled(ms: number): Promise<boolean> {
    const t = this.turn;
    if (t) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([t.over, new Promise<void>((r) => { timer = setTimeout(r, ms); })]);
      clearTimeout(timer);
    }
    return this.state === 'idle' && this.alive;
  }

  /**
   * Reset for the next holder: `/clear` and its result (2.1.x: a new
   * session id in `init` and `result`) or `conversation_reset` (newer CLIs);
   * a fresh process if that fails, times out, or reset_mode is respawn.
   * Rejects if the process has died: the pool then replaces the session.
   */
  async reset(): Promise<void> {
    await this.resetConversation();
    await this.wipe();
  }

  private async resetConversation(): Promise<void> {
    if (this.closed) throw new ShoalError(ErrorCodes.DRIVER_ERROR, 'session destroyed');
    // A dead process is the pool's to replace (reset fails → destroy → create): the crash stays visible in its metrics.
    if (this.state === 'dead' || (!this.alive && this.state !== 'starting')) throw this.deadError();
    // A turn left by an aborted lease is being interrupted: let it end first.
    if (this.turn && !(await this.settled(this.opts.interruptTimeoutMs + 500))) {
      // Killed meanwhile (a hung turn): the pool replaces it, and counts it.
      if ((this.state as SessionState) === 'dead') throw this.deadError();
      await this.respawn();
      return;
    }
    if (this.opts.resetMode === 'respawn' || this.state !== 'idle' || !this.alive) {
      await this.respawn();
      return;
    }
    try {
      await this.clear();
    } catch (err) {
      this.hooks.log('warn', 'claude /clear failed; respawning', { resourceId: this.resourceId, sessionId: this.sessionId, err: (err as Error).message });
      await this.respawn();
    }
  }

  /**
   * Private sessions: remove what the last holder left in the session's HOME
   * (transcripts, todos, file history, shell snapshots…) and working
   * directory, keeping only the CLI's own state file and process registry.
   * The CLI flushes transcripts lazily (2.1.197: about a second after a
   * turn, even after /clear), so each of the holder's conversation files is
   * replaced by an empty directory of the same name: a late write then fails
   * instead of bringing the transcript back.
   */
  private async wipe(): Promise<void> {
    if (!this.home) return;
    const old = [...this.heldIds].filter((id) => id !== this.sessionId);
    this.heldIds = new Set(this.sessionId ? [this.sessionId] : []);
    const { home, configDir } = this.home;
    const keep = new Set([join(configDir, '.claude.json'), join(configDir, 'sessions')]);
    const sweep = async (dir: string): Promise<void> => {
      let names: string[];
      try { names = await readdir(dir); } catch { return; }
      await Promise.all(names.map(async (n) => {
        const p = join(dir, n);
        if (keep.has(p)) return;
        if (p === configDir) { await sweep(p); return; }
        await rm(p, { recursive: true, force: true });
      }));
    };
    await sweep(home);
    if (this.workDir && this.root && this.workDir.startsWith(this.root)) {
      const names = await readdir(this.workDir).catch(() => [] as string[]);
      await Promise.all(names.map((n) => rm(join(this.workDir!, n), { recursive: true, force: true })));
    }
    if (old.length && this.workDir) {
      // The CLI's project folder name: its working directory with every non-alphanumeric character as '-'.
      const project = join(configDir, 'projects', this.workDir.replace(/[^A-Za-z0-9]/g, '-'));
      await Promise.all(old.map((id) => mkdir(join(project, `${id}.jsonl`), { recursive: true }).catch(() => {})));
    }
  }

  private async clear(): Promise<void> {
    const proc = this.proc!;
    const p = this.begin('clear', noop);
    const t = this.turn!;
    proc.write({ type: 'user', message: { role: 'user', content: '/clear' }, parent_tool_use_id: null, session_id: 'default' });
    t.killTimer = setTimeout(() => t.settle(new ShoalError(ErrorCodes.DRIVER_ERROR, `/clear not answered within ${this.opts.clearTimeoutMs} ms`)), this.opts.clearTimeoutMs);
    // On a timeout the turn is still open: the respawn that follows ends it.
    await p;
    this.conversationTurns = 0;
  }

  // ---- stdout ------------------------------------------------------------

  private onMessage(proc: CliProcess, m: CliMessage, line: string): void {
    if (this.proc !== proc) return;
    this.keepLine(line);
    if (m.type === 'system' && m.subtype === 'init') {
      if (typeof m.session_id === 'string') { this.sessionId = m.session_id; this.heldIds.add(m.session_id); }
      if (typeof m.model === 'string') this.model = m.model;
    } else if (m.type === 'control_request') {
      this.answerControl(proc, m);
    } else if (isApiRetry(m)) {
      this.hooks.apiRetry?.(typeof m.error_status === 'number' ? m.error_status : null, typeof m.retry_delay_ms === 'number' ? m.retry_delay_ms : 0);
    } else if (isRateLimit(m)) {
      this.rateLimit = m.rate_limit_info as unknown as Record<string, unknown>;
    }
    const t = this.turn;
    if (!t) return;
    if (isResult(m)) {
      this.flushText();
      if (typeof m.session_id === 'string') { this.sessionId = m.session_id; this.heldIds.add(m.session_id); }
      if (t.kind === 'send') {
        this.lastTurnInterrupted = t.interrupted;
        const { cost, total } = turnCost(m, this.costTotal);
        this.costTotal = total;
        this.hooks.turnEnded(t.cut ?? (t.interrupted ? 'interrupted' : m.is_error === true ? 'error' : 'success'), now() - t.startedAt, m, t.client, cost);
      } else {
        this.costTotal = 0; // /clear starts a new running total
      }
      this.endTurn(t);
      this.setState('idle');
      t.settle(undefined, m);
      void this.refreshRss();
      return;
    }
    if (t.kind === 'clear') {
      if (m.type === 'conversation_reset') {
        if (typeof m.new_conversation_id === 'string') this.sessionId = m.new_conversation_id;
        if (typeof m.session_id === 'string') this.sessionId = m.session_id;
        // Newer CLIs may end a /clear with this line alone: wait briefly for a result, then call it done.
        clearTimeout(t.killTimer);
        t.killTimer = setTimeout(() => {
          if (this.turn !== t) return;
          this.endTurn(t);
          this.setState('idle');
          t.settle(undefined, m);
        }, this.opts.clearResultGraceMs);
      }
      return;
    }
    if (t.text !== undefined) { t.text += line + '\n'; return; }
    t.events++;
    if (m.type === 'stream_event') {
      const d = (m.event as { delta?: { text?: unknown } } | undefined)?.delta;
      if (typeof d?.text === 'string') t.delta += d.text;
    } else if (m.type === 'assistant') {
      t.partial += textOf(m);
      t.delta = '';
    }
    t.emit(m);
  }

  /** Raw mode: emit the lines gathered from one stdout read as one string. */
  private flushText(): void {
    const t = this.turn;
    if (!t?.text) return;
    const text = t.text;
    t.text = '';
    t.emit(text);
  }

  /**
   * The CLI asks us something (e.g. `can_use_tool` when a permission prompt
   * tool is configured): nobody can answer interactively here, so tools are
   * denied and other requests refused, and the turn goes on. The request is
   * still streamed to the holder.
   */
  private answerControl(proc: CliProcess, m: CliMessage): void {
    const requestId = m.request_id;
    if (typeof requestId !== 'string') return;
    const sub = (m.request as { subtype?: string } | undefined)?.subtype;
    if (sub === 'can_use_tool') {
      proc.write({ type: 'control_response', response: { subtype: 'success', request_id: requestId, response: { behavior: 'deny', message: 'tool use is not permitted through Shoal; allow it with the pool\'s allowed_tools or permission_mode' } } });
    } else {
      proc.write({ type: 'control_response', response: { subtype: 'error', request_id: requestId, error: `control request ${sub ?? '?'} is not supported by Shoal` } });
    }
  }
}
