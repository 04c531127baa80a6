import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { ErrorCodes, ShoalError } from '@shoal/protocol';
import type { CliMessage } from './lines.js';

/** How to make a Claude pool work again when the CLI is not logged in. */
export const LOGIN_FIX = "give the node credentials: ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN in its environment (the pool's env_allow passes them), or run `claude /login` as the node's user";

/** A positive auth check is trusted this long; a negative one is never cached (the probe heals the pool). */
const AUTH_OK_TTL_MS = 5 * 60_000;

export function notLoggedIn(why: string, details: Record<string, unknown> = {}): ShoalError {
  return new ShoalError(ErrorCodes.POOL_UNAVAILABLE, `claude CLI is not logged in (${why}): ${LOGIN_FIX}`, { details: { ...details, retryable: true, reason: 'not_logged_in', fix: LOGIN_FIX } });
}

/**
 * `claude auth status` (CLI 2.x prints `{"loggedIn": ..., "authMethod": ...}`)
 * with the sessions' own environment, so it sees what they will see. An
 * answer that is not that JSON (an older CLI, a stand-in) says nothing: the
 * pool is not declared down on a guess.
 */
export function authChecker(command: () => string | undefined, env: () => Record<string, string>, timeoutMs = 10_000) {
  let okUntil = 0;
  let unknownUntil = 0;
  /** One check at a time, shared by a create and a probe asking together. */
  let running: Promise<{ ok: boolean | undefined; error?: ShoalError }> | undefined;
  const run = async (cmd: string): Promise<{ ok: boolean | undefined; error?: ShoalError }> => {
    const out = await new Promise<string | undefined>((resolve) => {
      const child = execFile(cmd, ['auth', 'status'], { env: env(), cwd: tmpdir(), timeout: timeoutMs, maxBuffer: 64 * 1024 }, (err, stdout) => {
        process.off('exit', stop);
        resolve(err && !stdout ? undefined : stdout);
      });
      // Never left behind by a node that exits meanwhile.
      const stop = () => { child.kill('SIGKILL'); };
      process.once('exit', stop);
      child.stdin?.end();
    });
    let st: { loggedIn?: unknown; authMethod?: unknown } | undefined;
    try {
      st = out ? JSON.parse(out) as typeof st : undefined;
    } catch {
      st = undefined;
    }
    // A CLI without `auth status` will not grow one: ask again only as seldom as after a positive answer.
    if (!st || typeof st.loggedIn !== 'boolean') { unknownUntil = Date.now() + AUTH_OK_TTL_MS; return { ok: undefined }; }
    if (st.loggedIn) { okUntil = Date.now() + AUTH_OK_TTL_MS; return { ok: true }; }
    return { ok: false, error: notLoggedIn(`\`claude auth status\`: loggedIn false, authMethod ${String(st.authMethod)}`) };
  };
  return function check(): Promise<{ ok: boolean | undefined; error?: ShoalError }> {
    const cmd = command();
    if (!cmd) return Promise.resolve({ ok: undefined });
    if (Date.now() < okUntil) return Promise.resolve({ ok: true });
    if (Date.now() < unknownUntil) return Promise.resolve({ ok: undefined });
    running ??= run(cmd).finally(() => { running = undefined; });
    return running;
  };
}

/**
 * A turn whose `result` line says `is_error: true` is a failed turn: a typed
 * error carrying the line. The CLI's answer to an interrupt
 * (`error_during_execution` on a turn that was interrupted) is the outcome
 * the holder asked for, not a failure; the same subtype on a turn nobody
 * interrupted is the CLI failing during execution, and is one.
 */
export function turnError(result: CliMessage, interrupted = false): ShoalError | undefined {
  if (result.type !== 'result' || result.is_error !== true || (interrupted && result.subtype === 'error_during_execution')) return undefined;
  const text = typeof result.result === 'string' ? result.result : '';
  const status = typeof result.api_error_status === 'number' ? result.api_error_status : undefined;
  if (status === 401 || /not logged in|\/login|invalid api key/i.test(text)) return notLoggedIn(text || `API status ${status}`, { result });
  const retryable = status !== undefined && (status >= 500 || status === 429);
  return new ShoalError(ErrorCodes.DRIVER_ERROR, `claude turn failed (${result.subtype ?? 'error'}): ${text || 'is_error'}`, { details: { result, retryable, ...(status !== undefined ? { status } : {}) } });
}
