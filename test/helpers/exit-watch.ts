/**
 * Loaded by .mocharc.json (`require`). Mocha runs without `--exit`, so a test
 * that leaves a handle open (a NATS connection, a timer, a server, a child
 * process) keeps the run alive after its summary. This turns that silent
 * hang into a failure that names what is still open. Its own timer is
 * unref'd: it fires only if something else keeps the process alive.
 */
const GRACE_MS = 30_000;

function describe(h: unknown): string {
  const o = h as Record<string, any>;
  const name = String(o?.constructor?.name ?? typeof h);
  if (name === 'Socket') return `Socket ${String(o.localAddress)}:${String(o.localPort)} -> ${String(o.remoteAddress)}:${String(o.remotePort)}`;
  if (name === 'Server') return `Server ${JSON.stringify(o.address?.())}`;
  if (name === 'ChildProcess') return `ChildProcess pid ${String(o.pid)} ${JSON.stringify(o.spawnargs).slice(0, 300)}`;
  return name;
}

export function mochaGlobalTeardown(): void {
  setTimeout(() => {
    const stdio = new Set<unknown>([process.stdin, process.stdout, process.stderr]);
    const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().filter((h) => !stdio.has(h));
    process.stderr.write([
      `\nThe test run is still alive ${GRACE_MS / 1000} s after its last test: something a test opened was not closed.`,
      `Active resources: ${JSON.stringify(process.getActiveResourcesInfo())}`,
      ...handles.map((h) => `  ${describe(h)}`),
      'Timers are not listed one by one: run the suspect files alone with `npx mocha <file>` to find the one that does not end.',
      '',
    ].join('\n'), () => {
      // Mocha's own 'exit' listener sets the code to its failure count: ours, added later, keeps that count (at least 1).
      process.on('exit', () => { process.exitCode = Math.max(1, Number(process.exitCode) || 0); });
      process.exit(1);
    });
  }, GRACE_MS).unref();
}
