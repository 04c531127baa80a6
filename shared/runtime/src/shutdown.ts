import { fstatSync } from 'node:fs';
import type { Logger } from './log.js';

/**
 * Run `stop` once on the first SIGTERM or SIGINT, then exit with its code.
 * A second signal while stopping exits at once with 130: an operator pressing
 * Ctrl-C twice means it.
 *
 * With `SHOAL_LIFELINE=1` (set by `shoal up` for its children), stdin is a
 * pipe from the parent, which never writes to it: when it ends, the parent is
 * gone (even SIGKILLed, which it cannot handle), and that counts as a SIGTERM.
 */
export function onShutdown(stop: (signal: string) => Promise<number | void>, log: Logger): void {
  let stopping = false;
  const begin = (signal: string, fields: Record<string, unknown> = {}) => {
    stopping = true;
    log.info('shutting down', { signal, ...fields });
    stop(signal).then(
      (code) => process.exit(code ?? 0),
      (err) => { log.error('shutdown failed', { err: (err as Error).message }); process.exit(1); },
    );
  };
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn('second signal, exiting now', { signal });
      process.exit(130);
    }
    begin(signal);
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  if (process.env.SHOAL_LIFELINE === '1') {
    // Not passed on to what this process starts (a driver's processes): their stdin is not this pipe.
    delete process.env.SHOAL_LIFELINE;
    // The lifeline ending while a stop is under way changes nothing: that stop goes on.
    watchLifeline(() => { if (!stopping) begin('SIGTERM', { cause: 'parent process gone (stdin closed)' }); });
  }
}

/**
 * Call `cut` once when stdin (a pipe or socket from the parent) ends. Only a
 * pipe is a lifeline: a terminal or /dev/null is not.
 */
function watchLifeline(cut: () => void): void {
  try {
    const st = fstatSync(0);
    if (!st.isFIFO() && !st.isSocket()) return;
  } catch {
    return;
  }
  // Once the parent is gone nobody reads stdout/stderr either: a log line
  // while draining must not end the process with an unhandled EPIPE.
  const ignore = () => {};
  process.stdout.on('error', ignore);
  process.stderr.on('error', ignore);
  let cutOnce = false;
  const once = () => { if (!cutOnce) { cutOnce = true; cut(); } };
  const stdin = process.stdin;
  stdin.on('data', ignore); // reading is what notices the end; the parent never writes
  stdin.on('end', once);
  stdin.on('close', once);
  stdin.on('error', once);
  // Watching the lifeline does not by itself keep the process alive.
  (stdin as { unref?: () => void }).unref?.();
}

/** Last line of defence: log and keep serving rather than die on a stray rejection. */
export function installCrashGuards(log: Logger): void {
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { err: err instanceof Error ? err.stack : String(err) }));
}
