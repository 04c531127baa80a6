#!/usr/bin/env node
import { loadConfigOrExit } from '@shoal/config';
import { isToken } from '@shoal/protocol';
import { connectNats, createLogger, installCrashGuards, onShutdown, startHttp } from '@shoal/runtime';
import { HealthChecker } from './checker.js';

/**
 * health-checker process: config → NATS → stored verdicts read → heartbeats
 * heard → nodes probed → HTTP (/metrics, /healthz, /api/v1/health/status).
 * SIGTERM/SIGINT: stop probing, exit 0. Replicas may run side by side
 * (docs/architecture.md says how their verdicts combine).
 *
 * Environment beyond @shoal/config: SHOAL_HEALTH_CHECKER_ID (default a fresh ULID).
 */
async function main(): Promise<void> {
  const cfg = loadConfigOrExit('health-checker');
  const checkerId = process.env.SHOAL_HEALTH_CHECKER_ID || undefined;
  if (checkerId !== undefined && !isToken(checkerId)) {
    process.stderr.write(`health-checker: SHOAL_HEALTH_CHECKER_ID = ${JSON.stringify(checkerId)}: must be 1-64 of A-Z a-z 0-9 _ -\n`);
    process.exit(2);
  }
  const log = createLogger({ svc: 'health-checker' }, cfg.logLevel);
  installCrashGuards(log);
  const nc = await connectNats({ ...cfg.nats, name: cfg.nats.name ?? `shoal-health-checker${checkerId ? '-' + checkerId : ''}` }, log);
  const checker = new HealthChecker(nc, log, { checkerId, prefix: cfg.prefix, healthCheck: cfg.healthCheck, goneAfterIntervals: cfg.balancer.goneAfterIntervals, jetstream: cfg.jetstream });
  let stopping = false;
  const started: { http?: Awaited<ReturnType<typeof startHttp>> } = {};
  onShutdown(async () => {
    stopping = true;
    await checker.stop();
    await started.http?.close();
    await nc.drain().catch(() => {});
    return 0;
  }, log);
  await checker.start();
  const http = await startHttp({
    host: cfg.http.host,
    port: cfg.http.port,
    registry: checker.metrics.registry,
    health: () => ({ ok: !nc.isClosed() && !stopping, checkerId: checker.checkerId }),
    routes: { '/api/v1/health/status': () => checker.status() },
    log,
  });
  started.http = http;
  // One machine-readable line for scripts and tests that start checkers.
  log.info('listening', { checkerId: checker.checkerId, httpPort: http?.port ?? null });
  void nc.closed().then((err) => {
    if (!stopping) {
      log.error('nats connection closed', { err: err?.message });
      process.exit(1);
    }
  });
}

main().catch((err) => {
  process.stderr.write(`health-checker: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
