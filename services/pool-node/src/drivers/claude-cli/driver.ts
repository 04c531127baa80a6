import { ErrorCodes, ShoalError } from '@shoal/protocol';
import type { Driver, DriverContext, ExecContext } from '../../driver.js';
import { authChecker, turnError } from './auth.js';
import { ClaudeBackend } from './backend.js';
import { claudeMetrics } from './metrics.js';
import { buildEnv, checkLeaseChoice, isExecutable, parseOptions, resolveCommand, UUID } from './options.js';
import { ClaudeSession } from './session.js';
import { localGates } from '../../turn-gate.js';

/** Starts of one account on this node, spaced by `ms` (sessions spawned back to back get throttled). */
const lastStart = new Map<string, number>();
function startStagger(key: string, ms: number): () => Promise<void> {
  return async () => {
    if (ms <= 0) return;
    const now = Date.now();
    const at = Math.max(now, (lastStart.get(key) ?? -Infinity) + ms);
    lastStart.set(key, at);
    if (at > now) await new Promise((r) => setTimeout(r, at - now));
  };
}

/**
 * `claude-cli`: one resource = one Claude Code CLI process in stream-json
 * mode. docs/claude.md has the options and how to run it for real.
 *
 * - create: spawn with the pool's flags, answer-wait `initialize`
 *   (bounded by the pool's create timeout). A missing command fails at once
 *   with "claude command not found", so the pool reports itself unavailable.
 * - exec `send {content}`: one user turn; every stdout line is an event, the
 *   turn's `result` line the final result. `interrupt`; `info`; `resume
 *   {session_id}` when `allow_resume_op` is set.
 * - reset: `/clear` (a new session id), or a fresh process.
 * - validate: process alive, no turn running; refreshes the RSS that
 *   `usage()` reports (the pool applies the memory limits).
 * - destroy: stdin EOF, SIGTERM after 2 s, SIGKILL 5 s later, reaped.
 */
export function claudeCliDriver(ctx: DriverContext): Driver<ClaudeSession> {
  const opts = parseOptions(ctx.options);
  const sessions = new Set<ClaudeSession>();
  let command: string | undefined;
  const backendState = new ClaudeBackend();
  const metrics = claudeMetrics(ctx.registry, ctx.labels ?? { pool: ctx.poolName }, function* () { for (const s of sessions) yield s.state; });
  // The account's cap on turns at once across the cluster, and the spacing of session starts on this node.
  const gate = opts.account && opts.account.maxConcurrentTurns > 0 ? (ctx.gates ?? localGates()).gate(opts.account.key, opts.account.maxConcurrentTurns) : undefined;
  const stagger = opts.account ? startStagger(opts.account.key, opts.account.startStaggerMs) : async () => {};
  const log = (level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => ctx.log?.[level](msg, { pool: ctx.poolName, ...fields });
  // The backend probe: a session of a CLI that is not logged in starts fine and fails every turn.
  const authOk = authChecker(() => (command && isExecutable(command) ? command : resolveCommand(opts.command).path), () => buildEnv(opts));

  // RSS is read from /proc on this timer (and on validate, and after each turn), never on usage().
  let rssTimer: NodeJS.Timeout | undefined;
  const watchRss = () => {
    if (rssTimer || opts.rssRefreshMs <= 0) return;
    rssTimer = setInterval(() => {
      for (const s of sessions) void s.refreshRss();
      if (sessions.size === 0) { clearInterval(rssTimer); rssTimer = undefined; }
    }, opts.rssRefreshMs);
    rssTimer.unref();
  };

  return {
    kind: 'claude-cli',
    oneShotOps: new Set(['send']),
    ownsExecDeadline: true,
    defaultExecTimeoutMs: (op) => (op === 'send' ? opts.turnTimeoutMs : undefined),
    backend: () => backendState.state(),

    async create({ resourceId, signal }) {
      // Looked up again only while not found (installing the CLI later heals the pool) or once the found file is gone.
      const found = command && isExecutable(command) ? { path: command, looked: [command] } : resolveCommand(opts.command);
      command = found.path;
      if (!found.path) {
        throw new ShoalError(ErrorCodes.POOL_UNAVAILABLE, `claude command not found: ${opts.command} (looked in PATH and node_modules/.bin; set the pool's options.command)`, { details: { command: opts.command, looked: found.looked.slice(0, 20), fix: "install the CLI (npm i -g @anthropic-ai/claude-code) or set the pool's options.command" } });
      }
      const auth = await authOk();
      if (auth.ok === false) throw auth.error!;
      const s = new ClaudeSession(resourceId, opts, found.path, {
        turnEnded: (outcome, ms, result, client, costUsd) => { metrics.turn(outcome, ms, result, client, costUsd); backendState.turn(outcome, result); },
        apiRetry: (status, delayMs) => {
          metrics.apiRetry(status);
          // Rate limited or overloaded: hold new turns of this account on this node for the CLI's own delay.
          if (gate && (status === 429 || status === 529)) gate.pause(Math.max(1000, delayMs));
        },
        ...(gate ? { gate } : {}),
        stateChanged: () => {},
        skipped: () => metrics.skipped(),
        stalled: (stage, action) => metrics.stalled(stage, action),
        log,
      });
      sessions.add(s);
      try {
        await stagger();
        await s.start(signal);
      } catch (err) {
        sessions.delete(s);
        throw err;
      }
      watchRss();
      log('debug', 'claude session ready', { resourceId, sessionId: s.sessionId, pid: s.pid });
      return s;
    },

    // A missing command: the probe cannot tell (the create says why, and finds it once installed).
    probe: authOk,

    async validate(s) {
      if (!(await s.settled(Math.min(2_000, opts.interruptTimeoutMs)))) return false;
      await s.refreshRss();
      return s.alive && s.state === 'idle';
    },

    async reset(s) {
      await s.reset();
    },

    /**
     * A parked conversation whose session is gone: resume it from the
     * session store — only a shared one (private_config: false) has it.
     */
    async adopt(s, meta) {
      const id = meta.session_id;
      if (opts.privateConfig || typeof id !== 'string' || !UUID.test(id)) return false;
      await s.resume(id);
      return true;
    },

    checkLeaseOptions(o) {
      checkLeaseChoice(opts.leaseOptions, o);
    },

    async prepare(s, o, _signal, keepContext) {
      return s.applyLease(o === undefined ? undefined : checkLeaseChoice(opts.leaseOptions, o), keepContext === true);
    },

    async exec(s, op, args, { emit, signal, timeoutMs, client }: ExecContext) {
      const a = (args ?? {}) as Record<string, unknown>;
      if (typeof a !== 'object' || Array.isArray(a)) throw new ShoalError(ErrorCodes.BAD_REQUEST, `claude-cli op ${op}: args must be an object`);
      switch (op) {
        case 'send':
          if (a.raw !== undefined && typeof a.raw !== 'boolean') throw new ShoalError(ErrorCodes.BAD_REQUEST, 'send: raw must be true or false');
        {
          const result = await s.send(a.content, emit, signal, a.raw === true, timeoutMs, client);
          const failed = turnError(result, s.lastTurnInterrupted);
          if (failed) throw failed;
          return result;
        }
        case 'interrupt':
          return s.interrupt();
        case 'info':
          return {
            session_id: s.sessionId, model: s.model, state: s.state, pid: s.pid, turns: s.turns, conversation_turns: s.conversationTurns,
            rss_bytes: await s.refreshRss(), non_json_lines: s.nonJsonLines, stderr_tail: s.stderrTail, rate_limit: s.rateLimit,
          };
        case 'resume': {
          if (!opts.allowResumeOp) throw new ShoalError(ErrorCodes.UNSUPPORTED_OP, `pool ${ctx.poolName} does not allow the resume op (options.allow_resume_op)`);
          const id = a.session_id;
          if (typeof id !== 'string' || !UUID.test(id)) throw new ShoalError(ErrorCodes.BAD_REQUEST, 'resume needs {session_id}: a session id (UUID)');
          await s.resume(id);
          return { session_id: s.sessionId };
        }
        default:
          throw new ShoalError(ErrorCodes.UNSUPPORTED_OP, `claude-cli driver has no op ${op} (send, interrupt, info${opts.allowResumeOp ? ', resume' : ''})`);
      }
    },

    async destroy(s) {
      sessions.delete(s);
      await s.close();
    },

    usage(s) {
      return { memoryBytes: s.rssBytes };
    },

    describe(s) {
      return s.model ? { session_id: s.sessionId, model: s.model } : { session_id: s.sessionId };
    },

    /** For node status and `shoal status`: tokens and cost by the holders' client names. */
    stats() {
      return { clients: Object.fromEntries(metrics.clients) };
    },

    routes(pool) {
      return {
        [`/api/v1/claude/${pool.name}/sessions`]: () => ({
          pool: pool.name,
          sessions: [...sessions].map((s) => ({ resourceId: s.resourceId, session_id: s.sessionId, state: s.state, pid: s.pid, rss_bytes: s.rssBytes, turns: s.turns, conversation_turns: s.conversationTurns, non_json_lines: s.nonJsonLines })),
        }),
      };
    },
  };
}
