import type { Logger } from './log.js';

/**
 * Run `stop` once on the first SIGTERM or SIGINT, then exit with its code.
 * A second signal while stopping exits at once with 130: an operator pressing
 * Ctrl-C twice means it.
 */
export function onShutdown(stop: (signal: string) => Promise<number | void>, log: Logger): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn('second signal, exiting now', { signal });
      process.exit(130);
    }
    stopping = true;
    log.info('shutting down', { signal });
    stop(signal).then(
      (code) => process.exit(code ?? 0),
      (err) => { log.error('shutdown failed', { err: (err as Error).message }); process.exit(1); },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

/** Last line of defence: log and keep serving rather than die on a stray rejection. */
export function installCrashGuards(log: Logger): void {
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { err: err instanceof Error ? err.stack : String(err) }));
}
