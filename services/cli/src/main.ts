#!/usr/bin/env node
import { run } from './run.js';

/**
 * The `shoal` command. Exit codes: 0 ok, 1 operation failed, 2 usage error,
 * 3 cluster not reachable (docs/cli.md). A closed stdout (`shoal status | head`)
 * ends the command quietly.
 */
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
});

run(process.argv.slice(2)).then((code) => {
  // Flush what is buffered, then exit: a NATS reconnect timer must not keep a finished command alive.
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}, (err: unknown) => {
  // run() answers every known failure with a code; this is a bug, said once and plainly.
  process.stderr.write(`shoal: internal error: ${(err as Error)?.stack ?? String(err)}\n`, () => process.exit(1));
});
