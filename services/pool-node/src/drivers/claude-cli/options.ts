import { accessSync, constants, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDuration, parseSize } from '@shoal/config';
import { ErrorCodes, ShoalError } from '@shoal/protocol';

/**
 * The claude-cli driver's options (a pool's `options:` block), typed and
 * checked once when the node starts, and the pure functions that turn them
 * into the CLI's command line and environment. Nothing here comes from a
 * client's message: command, arguments and environment are the operator's.
 */
export interface ClaudeOptions {
  /** `claude` (looked up in PATH, then in node_modules/.bin), a path, or an absolute path. */
  command: string;
  /** Extra arguments placed before the generated flags (e.g. a script for `command: node`). */
  args: string[];
  model?: string;
  systemPrompt?: string;
  appendSystemPrompt?: string;
  allowedTools: string[];
  disallowedTools: string[];
  maxTurns?: number;
  permissionMode?: string;
  includePartialMessages: boolean;
  /** Resume this session id on every fresh process (`--resume`). */
  resume?: string;
  /** Fixed session id for the first process (`--session-id`); otherwise the driver picks one per process. */
  sessionId?: string;
  forkSession: boolean;
  /** `--mcp-config`: a file path or a JSON string (a mapping in YAML is serialised). */
  mcpConfig?: string;
  addDirs: string[];
  /** A fixed working directory shared by every session (kept on destroy). */
  cwd?: string;
  /** Root under which each session gets a fresh working directory, removed on destroy. */
  cwdRoot: string;
  /** Names of the node's environment variables passed to the CLI; nothing else is. */
  envAllow: string[];
  /** Fixed variables set for the CLI (after the allow-list). */
  env: Record<string, string>;
  /** `clear`: reset sends /clear; `respawn`: reset starts a fresh process. */
  resetMode: 'clear' | 'respawn';
  clearTimeoutMs: number;
  /** After an interrupt (or an aborted turn), how long to wait for the turn's result before killing the process. */
  interruptTimeoutMs: number;
  stderrTailBytes: number;
  /** Period of the RSS refresh from /proc/<pid>/status. */
  rssRefreshMs: number;
  /** Let a holder continue another session on its lease with the `resume` op (a validated UUID only). */
  allowResumeOp: boolean;
  /** After a `conversation_reset` line, how long to wait for the /clear turn's `result` before treating it as done. */
  clearResultGraceMs: number;
  /**
   * Hang watchdog: a turn with no stdout for this long is interrupted (its
   * caller gets SESSION_STALLED), and killed `interrupt_timeout` later if still
   * silent; a control request unanswered this long kills the process. 0 = off.
   */
  stallTimeoutMs: number;
  /** Deadline of a `send` whose caller gave none (separate from the lease TTL). */
  turnTimeoutMs: number;
  /** Each session gets its own HOME and CLAUDE_CONFIG_DIR under its folder, wiped on reset and destroy. */
  privateConfig: boolean;
  /** false: `--no-session-persistence` (the CLI writes no transcript; nothing to resume). */
  sessionPersistence: boolean;
  maxBudgetUsd?: number;
  fallbackModel?: string;
  /** `--settings`: a file path or a JSON string (a mapping in YAML is serialised). */
  settings?: string;
  strictMcpConfig: boolean;
  /** `--json-schema`: a JSON string (a mapping in YAML is serialised). */
  jsonSchema?: string;
  effort?: string;
  /**
   * The credential these sessions use, by a name (never the secret): turns
   * at once across the cluster under this name are capped, and session
   * starts on this node are spaced.
   */
  account?: { key: string; maxConcurrentTurns: number; startStaggerMs: number };
  /** What a client may choose per lease (`acquire {options}`); a key not here is refused. */
  leaseOptions: LeaseAllow;
  /** Destroy: after stdin EOF, wait this long before SIGTERM (default 2 s)… */
  stopGraceMs: number;
  /** …and this long after SIGTERM before SIGKILL (default 5 s). */
  stopKillAfterMs: number;
}

/** The operator's allow-list for per-lease options. */
export interface LeaseAllow {
  model?: string[];
  permissionMode?: string[];
  /** Any text (up to 16 KB) may be appended to the system prompt. */
  appendSystemPrompt?: boolean;
  /** A lease may narrow the tools to a subset of these. */
  allowedTools?: string[];
  /** A lease may pick one of these working directories. */
  cwd?: string[];
}

/** Per-lease choices, checked against the allow-list. */
export interface LeaseChoice {
  model?: string;
  permissionMode?: string;
  appendSystemPrompt?: string;
  allowedTools?: string[];
  cwd?: string;
}

const LEASE_KEYS = ['model', 'permission_mode', 'append_system_prompt', 'allowed_tools', 'cwd'] as const;
const MAX_APPEND = 16 * 1024;

/** What the SDKs pass to every CLI they spawn. */
export const BASE_FLAGS = ['--output-format', 'stream-json', '--verbose', '--input-format', 'stream-json'] as const;

/** The variables passed when `env_allow` is not set: enough to run, to authenticate, and to reach the API through a proxy. */
export const DEFAULT_ENV_ALLOW = [
  'PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR',
  'ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_BASE_URL', 'CLAUDE_CODE_OAUTH_TOKEN', 'CLAUDE_CONFIG_DIR',
  'CLAUDE_CODE_USE_BEDROCK', 'CLAUDE_CODE_USE_VERTEX', 'AWS_REGION', 'AWS_PROFILE', 'CLOUD_ML_REGION', 'ANTHROPIC_VERTEX_PROJECT_ID',
  'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'NODE_EXTRA_CA_CERTS',
];

export const PERMISSION_MODES = ['default', 'acceptEdits', 'plan', 'bypassPermissions', 'dontAsk', 'auto'];

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const KEYS = [
  'command', 'args', 'model', 'system_prompt', 'append_system_prompt', 'allowed_tools', 'disallowed_tools', 'max_turns',
  'permission_mode', 'include_partial_messages', 'resume', 'session_id', 'fork_session', 'mcp_config', 'add_dirs', 'cwd',
  'cwd_root', 'env_allow', 'env', 'reset_mode', 'clear_timeout', 'interrupt_timeout', 'stderr_tail', 'rss_refresh',
  'allow_resume_op', 'clear_result_grace', 'stop_grace', 'stop_kill_after', 'stall_timeout', 'turn_timeout', 'private_config',
  'session_persistence', 'max_budget_usd', 'fallback_model', 'settings', 'strict_mcp_config', 'json_schema', 'effort', 'lease_options', 'account',
] as const;

export const EFFORTS = ['low', 'medium', 'high', 'xhigh', 'max'];

function bad(key: string, v: unknown, why: string): ShoalError {
  return new ShoalError(ErrorCodes.BAD_REQUEST, `claude-cli driver option ${key} = ${JSON.stringify(v)}: ${why}`);
}

const str = (o: Record<string, unknown>, key: string): string | undefined => {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v === '') throw bad(key, v, 'expected a non-empty string');
  return v;
};

const bool = (o: Record<string, unknown>, key: string, dflt: boolean): boolean => {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'false') return v === 'true';
  throw bad(key, v, 'expected true or false');
};

/** A list from YAML (`[a, b]`) or from a string (`a,b`), as an environment override would give it. */
const list = (o: Record<string, unknown>, key: string): string[] | undefined => {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  const items = typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter(Boolean) : v;
  if (!Array.isArray(items) || !items.every((x) => typeof x === 'string' && x !== '')) throw bad(key, v, 'expected a list of non-empty strings');
  return items as string[];
};

const duration = (o: Record<string, unknown>, key: string, dflt: number): number => {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  try {
    return parseDuration(v, key);
  } catch {
    throw bad(key, v, 'expected a duration (300ms, 5s, 1m) or a number of ms');
  }
};

const KEY_NAME = /^[A-Za-z0-9_-]{1,64}$/;

function parseAccount(v: unknown): ClaudeOptions['account'] {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw bad('account', v, 'expected a mapping {key, max_concurrent_turns, start_stagger}');
  const o = v as Record<string, unknown>;
  const unknown = Object.keys(o).find((k) => !['key', 'max_concurrent_turns', 'start_stagger'].includes(k));
  if (unknown) throw bad(`account.${unknown}`, o[unknown], 'unknown; expected key, max_concurrent_turns, start_stagger');
  const key = o.key;
  if (typeof key !== 'string' || !KEY_NAME.test(key)) throw bad('account.key', key, 'expected a name (A-Z a-z 0-9 _ -, up to 64): the credential\'s name, never the secret');
  if (/^(sk-|sk_)/.test(key)) throw bad('account.key', '(hidden)', 'looks like a secret; name the credential instead');
  const cap = o.max_concurrent_turns === undefined ? 0 : Number(o.max_concurrent_turns);
  if (!Number.isInteger(cap) || cap < 0 || cap > 10_000) throw bad('account.max_concurrent_turns', o.max_concurrent_turns, 'expected an integer from 0 (no cap) to 10000');
  return { key, maxConcurrentTurns: cap, startStaggerMs: duration(o, 'start_stagger', 0) };
}

function parseLeaseAllow(v: unknown): LeaseAllow {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw bad('lease_options', v, 'expected a mapping of option: allowed values');
  const o = v as Record<string, unknown>;
  const unknown = Object.keys(o).find((k) => !(LEASE_KEYS as readonly string[]).includes(k));
  if (unknown) throw bad(`lease_options.${unknown}`, o[unknown], `unknown; expected one of ${LEASE_KEYS.join(', ')}`);
  const allow: LeaseAllow = {};
  const model = list(o, 'model');
  if (model) allow.model = model;
  const modes = list(o, 'permission_mode');
  if (modes) {
    const badMode = modes.find((m) => !PERMISSION_MODES.includes(m));
    if (badMode) throw bad('lease_options.permission_mode', badMode, `expected modes among ${PERMISSION_MODES.join(', ')}`);
    allow.permissionMode = modes;
  }
  if (o.append_system_prompt !== undefined) allow.appendSystemPrompt = bool(o, 'append_system_prompt', false);
  const tools = list(o, 'allowed_tools');
  if (tools) allow.allowedTools = tools;
  const dirs = list(o, 'cwd');
  if (dirs) {
    const rel = dirs.find((d) => !isAbsolute(d));
    if (rel) throw bad('lease_options.cwd', rel, 'expected absolute paths');
    allow.cwd = dirs;
  }
  return allow;
}

/**
 * A client's per-lease options, checked against the pool's allow-list: a
 * client never widens what the operator permits. BAD_REQUEST names what
 * was refused; nothing here reaches a command line unchecked.
 */
export function checkLeaseChoice(allow: LeaseAllow, v: unknown): LeaseChoice {
  const refuse = (why: string) => new ShoalError(ErrorCodes.BAD_REQUEST, `per-lease options: ${why}`, { details: { allowed: allow } });
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw refuse('expected a map');
  const o = v as Record<string, unknown>;
  const c: LeaseChoice = {};
  for (const [k, val] of Object.entries(o)) {
    if (val === undefined || val === null) continue;
    switch (k) {
      case 'model':
        if (typeof val !== 'string' || !allow.model?.includes(val)) throw refuse(`model ${JSON.stringify(val)} is not allowed (allowed: ${allow.model?.join(', ') || 'none'})`);
        c.model = val;
        break;
      case 'permission_mode':
        if (typeof val !== 'string' || !allow.permissionMode?.includes(val)) throw refuse(`permission_mode ${JSON.stringify(val)} is not allowed (allowed: ${allow.permissionMode?.join(', ') || 'none'})`);
        c.permissionMode = val;
        break;
      case 'append_system_prompt':
        if (!allow.appendSystemPrompt) throw refuse('append_system_prompt is not allowed on this pool');
        if (typeof val !== 'string' || val.length === 0 || val.length > MAX_APPEND) throw refuse(`append_system_prompt must be a string of 1 to ${MAX_APPEND} characters`);
        c.appendSystemPrompt = val;
        break;
      case 'allowed_tools': {
        if (!Array.isArray(val) || !val.every((t) => typeof t === 'string' && t !== '')) throw refuse('allowed_tools must be a list of tool names');
        const outside = (val as string[]).find((t) => !allow.allowedTools?.includes(t));
        if (outside !== undefined) throw refuse(`tool ${JSON.stringify(outside)} is not allowed (allowed: ${allow.allowedTools?.join(', ') || 'none'})`);
        c.allowedTools = val as string[];
        break;
      }
      case 'cwd':
        if (typeof val !== 'string' || !allow.cwd?.includes(val)) throw refuse(`cwd ${JSON.stringify(val)} is not allowed (allowed: ${allow.cwd?.join(', ') || 'none'})`);
        c.cwd = val;
        break;
      default:
        throw refuse(`unknown option ${JSON.stringify(k)} (known: ${LEASE_KEYS.join(', ')})`);
    }
  }
  return c;
}

/** A file path or a JSON string as given, or a mapping serialised to JSON. */
function jsonOrPath(o: Record<string, unknown>, key: string, pathOk: boolean): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object' && !Array.isArray(v)) return JSON.stringify(v);
  if (typeof v === 'string' && v !== '') {
    if (!pathOk) {
      try { JSON.parse(v); } catch { throw bad(key, v, 'expected a JSON string or a mapping'); }
    }
    return v;
  }
  throw bad(key, v, pathOk ? 'expected a file path, a JSON string or a mapping' : 'expected a JSON string or a mapping');
}

/** Check and type a pool's `options:`; throws BAD_REQUEST naming the key, so a bad config stops start-up. */
export function parseOptions(o: Record<string, unknown> = {}): ClaudeOptions {
  const unknown = Object.keys(o).find((k) => !(KEYS as readonly string[]).includes(k));
  if (unknown) throw bad(unknown, o[unknown], `unknown option; expected one of ${KEYS.join(', ')}`);

  let maxTurns: number | undefined;
  if (o.max_turns !== undefined && o.max_turns !== null) {
    maxTurns = Number(o.max_turns);
    if (!Number.isInteger(maxTurns) || maxTurns < 1) throw bad('max_turns', o.max_turns, 'expected an integer >= 1');
  }
  const permissionMode = str(o, 'permission_mode');
  if (permissionMode !== undefined && !PERMISSION_MODES.includes(permissionMode)) throw bad('permission_mode', permissionMode, `expected one of ${PERMISSION_MODES.join(', ')}`);
  for (const key of ['resume', 'session_id']) {
    const v = str(o, key);
    if (v !== undefined && !UUID.test(v)) throw bad(key, v, 'expected a session id (a UUID)');
  }
  const mcpConfig = jsonOrPath(o, 'mcp_config', true);
  const settings = jsonOrPath(o, 'settings', true);
  const jsonSchema = jsonOrPath(o, 'json_schema', false);
  let maxBudgetUsd: number | undefined;
  if (o.max_budget_usd !== undefined && o.max_budget_usd !== null) {
    maxBudgetUsd = Number(o.max_budget_usd);
    if (!Number.isFinite(maxBudgetUsd) || maxBudgetUsd <= 0) throw bad('max_budget_usd', o.max_budget_usd, 'expected a number of dollars > 0');
  }
  const effort = str(o, 'effort');
  if (effort !== undefined && !EFFORTS.includes(effort)) throw bad('effort', effort, `expected one of ${EFFORTS.join(', ')}`);
  const envAllow = list(o, 'env_allow') ?? DEFAULT_ENV_ALLOW;
  const badName = envAllow.find((n) => !ENV_NAME.test(n));
  if (badName) throw bad('env_allow', badName, 'not an environment variable name');
  const env: Record<string, string> = {};
  if (o.env !== undefined && o.env !== null) {
    if (typeof o.env !== 'object' || Array.isArray(o.env)) throw bad('env', o.env, 'expected a mapping of NAME: value');
    for (const [k, v] of Object.entries(o.env as Record<string, unknown>)) {
      if (!ENV_NAME.test(k)) throw bad('env', k, 'not an environment variable name');
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw bad(`env.${k}`, v, 'expected a string');
      env[k] = String(v);
    }
  }
  const resetMode = str(o, 'reset_mode') ?? 'clear';
  if (resetMode !== 'clear' && resetMode !== 'respawn') throw bad('reset_mode', resetMode, 'expected clear or respawn');
  let stderrTailBytes = 8192;
  if (o.stderr_tail !== undefined && o.stderr_tail !== null) {
    try {
      stderrTailBytes = parseSize(o.stderr_tail, 'stderr_tail');
    } catch {
      throw bad('stderr_tail', o.stderr_tail, 'expected a size (8KB) or a number of bytes');
    }
  }
  const cwd = str(o, 'cwd');
  if (cwd !== undefined && !isAbsolute(cwd)) throw bad('cwd', cwd, 'expected an absolute path');
  const cwdRoot = str(o, 'cwd_root') ?? join(tmpdir(), 'shoal-claude');
  if (!isAbsolute(cwdRoot)) throw bad('cwd_root', cwdRoot, 'expected an absolute path');

  const account = parseAccount(o.account);
  const opts: ClaudeOptions = {
    ...(account ? { account } : {}),
    leaseOptions: parseLeaseAllow(o.lease_options),
    command: str(o, 'command') ?? 'claude',
    args: list(o, 'args') ?? [],
    allowedTools: list(o, 'allowed_tools') ?? [],
    disallowedTools: list(o, 'disallowed_tools') ?? [],
    includePartialMessages: bool(o, 'include_partial_messages', false),
    forkSession: bool(o, 'fork_session', false),
    addDirs: list(o, 'add_dirs') ?? [],
    cwdRoot,
    envAllow,
    env,
    resetMode,
    clearTimeoutMs: duration(o, 'clear_timeout', 10_000),
    interruptTimeoutMs: duration(o, 'interrupt_timeout', 5_000),
    stderrTailBytes,
    rssRefreshMs: duration(o, 'rss_refresh', 5_000),
    allowResumeOp: bool(o, 'allow_resume_op', false),
    clearResultGraceMs: duration(o, 'clear_result_grace', 250),
    stopGraceMs: duration(o, 'stop_grace', 2_000),
    stopKillAfterMs: duration(o, 'stop_kill_after', 5_000),
    stallTimeoutMs: duration(o, 'stall_timeout', 300_000),
    turnTimeoutMs: duration(o, 'turn_timeout', 600_000),
    privateConfig: bool(o, 'private_config', true),
    sessionPersistence: bool(o, 'session_persistence', true),
    strictMcpConfig: bool(o, 'strict_mcp_config', false),
  };
  if (opts.turnTimeoutMs < 1 || opts.turnTimeoutMs > 3_600_000) throw bad('turn_timeout', o.turn_timeout, 'expected a duration from 1ms to 1h');
  // The driver sets these two for a private session; a fixed value would be silently overridden.
  for (const k of ['HOME', 'CLAUDE_CONFIG_DIR']) {
    if (opts.privateConfig && env[k] !== undefined) throw bad(`env.${k}`, env[k], 'each session has its own HOME and CLAUDE_CONFIG_DIR (private_config: true); set private_config: false to share one');
  }
  const optional: [keyof ClaudeOptions, string | number | undefined][] = [
    ['model', str(o, 'model')], ['systemPrompt', str(o, 'system_prompt')], ['appendSystemPrompt', str(o, 'append_system_prompt')],
    ['maxTurns', maxTurns], ['permissionMode', permissionMode], ['resume', str(o, 'resume')], ['sessionId', str(o, 'session_id')],
    ['mcpConfig', mcpConfig], ['cwd', cwd], ['settings', settings], ['jsonSchema', jsonSchema], ['maxBudgetUsd', maxBudgetUsd],
    ['fallbackModel', str(o, 'fallback_model')], ['effort', effort],
  ];
  for (const [k, v] of optional) if (v !== undefined) (opts as unknown as Record<string, unknown>)[k] = v;
  if (opts.forkSession && !opts.resume) throw bad('fork_session', true, 'only makes sense with resume');
  return opts;
}

/**
 * The CLI's arguments for one process. `sessionId` is the id this process
 * starts with (the driver picks a fresh UUID per process, so the lease can
 * carry it before the first turn); `resume` overrides the pool's option.
 */
export function buildArgs(o: ClaudeOptions, run: { sessionId?: string; resume?: string } = {}): string[] {
  const a: string[] = [...o.args, ...BASE_FLAGS];
  if (o.model) a.push('--model', o.model);
  if (o.systemPrompt !== undefined) a.push('--system-prompt', o.systemPrompt);
  if (o.appendSystemPrompt !== undefined) a.push('--append-system-prompt', o.appendSystemPrompt);
  if (o.allowedTools.length) a.push('--allowedTools', o.allowedTools.join(','));
  if (o.disallowedTools.length) a.push('--disallowedTools', o.disallowedTools.join(','));
  if (o.maxTurns !== undefined) a.push('--max-turns', String(o.maxTurns));
  if (o.permissionMode) a.push('--permission-mode', o.permissionMode);
  if (o.includePartialMessages) a.push('--include-partial-messages');
  const resume = run.resume ?? o.resume;
  if (resume) a.push(`--resume=${resume}`);
  if (resume && o.forkSession) a.push('--fork-session');
  // Resuming without a fork keeps the resumed id: no --session-id then.
  if (run.sessionId && (!resume || o.forkSession)) a.push(`--session-id=${run.sessionId}`);
  if (o.mcpConfig) a.push('--mcp-config', o.mcpConfig);
  for (const d of o.addDirs) a.push('--add-dir', d);
  if (o.strictMcpConfig) a.push('--strict-mcp-config');
  if (o.settings) a.push('--settings', o.settings);
  if (o.jsonSchema) a.push('--json-schema', o.jsonSchema);
  if (o.maxBudgetUsd !== undefined) a.push('--max-budget-usd', String(o.maxBudgetUsd));
  if (o.fallbackModel) a.push('--fallback-model', o.fallbackModel);
  if (o.effort) a.push('--effort', o.effort);
  if (!o.sessionPersistence) a.push('--no-session-persistence');
  return a;
}

/**
 * The CLI's environment: only the allow-listed variables of the node, then
 * the pool's fixed ones, then what the SDKs set. NODE_OPTIONS never passes
 * (a node's --inspect or --max-old-space-size is not the CLI's business).
 */
export function buildEnv(o: ClaudeOptions, from: NodeJS.ProcessEnv = process.env, home?: { home: string; configDir: string }): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of o.envAllow) {
    const v = from[name];
    if (v !== undefined) env[name] = v;
  }
  Object.assign(env, o.env);
  if (home) {
    env.HOME = home.home;
    env.CLAUDE_CONFIG_DIR = home.configDir;
  }
  delete env.NODE_OPTIONS;
  env.CLAUDE_CODE_ENTRYPOINT = 'sdk-ts';
  return env;
}

export function isExecutable(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Directories from `start` up to the file system root. */
function ancestors(start: string): string[] {
  const out: string[] = [];
  for (let d = resolve(start); ; d = dirname(d)) {
    out.push(d);
    if (dirname(d) === d) return out;
  }
}

const HERE = dirname(fileURLToPath(import.meta.url));

/**
 * Find the CLI: an absolute path as is; a path with a slash relative to the
 * node's working directory; a bare name in PATH, then in node_modules/.bin
 * of the working directory's and this package's ancestors (the repository's
 * dev dependency `@anthropic-ai/claude-code`). Returns the places looked at
 * when not found, for the error message.
 */
export function resolveCommand(command: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): { path?: string; looked: string[] } {
  if (isAbsolute(command)) return isExecutable(command) ? { path: command, looked: [command] } : { looked: [command] };
  if (command.includes('/')) {
    const p = resolve(cwd, command);
    return isExecutable(p) ? { path: p, looked: [p] } : { looked: [p] };
  }
  const looked: string[] = [];
  const dirs = (env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const root of [...new Set([...ancestors(cwd), ...ancestors(HERE)])]) dirs.push(join(root, 'node_modules', '.bin'));
  for (const d of dirs) {
    const p = join(d, command);
    looked.push(p);
    if (isExecutable(p)) return { path: p, looked };
  }
  return { looked };
}
