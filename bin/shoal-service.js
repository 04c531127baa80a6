#!/usr/bin/env node
// One entry point for every Shoal service, as the container image runs them:
//   shoal-service pool-node | balancer | autoscaler | health-checker
//   shoal-service healthcheck     exit 0 when this container's /healthz says ok
//   shoal-service prestop         (Kubernetes preStop) start the drain, wait for the exit
// The service runs in this very process (no shell, no child): SIGTERM reaches
// its shutdown handler, which drains before exiting.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SERVICES = ['pool-node', 'balancer', 'autoscaler', 'health-checker'];
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [name] = process.argv.splice(2, 1);

if (name === 'healthcheck') {
  // HEALTHCHECK: the port the service was told to use; a missing or 503 answer is unhealthy.
  const port = Number(process.env.SHOAL_HTTP_PORT || 8080);
  const ctl = AbortSignal.timeout(Number(process.env.SHOAL_HEALTHCHECK_TIMEOUT_MS || 3000));
  try {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: ctl });
    process.exit(res.ok ? 0 : 1);
  } catch (err) {
    process.stderr.write(`healthcheck: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}

if (name === 'prestop') {
  // Kubernetes preStop: start the service's drain (SIGTERM to PID 1, the
  // service in this image) and return once it has exited, bounded by
  // SHOAL_PRESTOP_TIMEOUT_MS, so a rollout waits for the leases to come back.
  const until = Date.now() + Number(process.env.SHOAL_PRESTOP_TIMEOUT_MS || 40000);
  try { process.kill(1, 'SIGTERM'); } catch { process.exit(0); }
  for (;;) {
    try { process.kill(1, 0); } catch { process.exit(0); }
    if (Date.now() > until) process.exit(0);
    await new Promise((r) => setTimeout(r, 200));
  }
}

if (!SERVICES.includes(name)) {
  process.stderr.write(`usage: shoal-service <${SERVICES.join('|')}|healthcheck|prestop>${name ? ` (got ${JSON.stringify(name)})` : ''}\n`);
  process.exit(2);
}
const main = join(root, 'services', name, 'dist', 'main.js');
if (!existsSync(main)) {
  process.stderr.write(`shoal-service: ${main} is missing; build the workspace first (npx tsc -b)\n`);
  process.exit(1);
}
process.title = `shoal-${name}`;
await import(pathToFileURL(main).href);
