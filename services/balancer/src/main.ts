#!/usr/bin/env node
import { loadConfigOrExit } from '@shoal/config';
import { isToken } from '@shoal/protocol';
import { connectNats, createLogger, installCrashGuards, onShutdown, startHttp } from '@shoal/runtime';
import { Balancer, type ExecMode } from './balancer.js';

/**
 * balancer process: config → NATS → heartbeats and settings heard → queue
 * groups joined → HTTP → ready. SIGTERM/SIGINT: leave the queue groups, let
 * the requests in flight finish (each within its own deadline), exit 0.
 *
 * Environment beyond @shoal/config: SHOAL_BALANCER_ID (default a fresh ULID),
 * SHOAL_BALANCER_EXEC_MODE (`forward`, the default, or `relay`).
 */
async function main(): Promise<void> {
  const cfg = loadConfigOrExit('balancer');
  const env = process.env;
  const balancerId = env.SHOAL_BALANCER_ID || undefined;
  if (balancerId !== undefined && !isToken(balancerId)) {
    process.stderr.write(`balancer: SHOAL_BALANCER_ID = ${JSON.stringify(balancerId)}: must be 1-64 of A-Z a-z 0-9 _ -\n`);
    process.exit(2);
  }
  const execMode = (env.SHOAL_BALANCER_EXEC_MODE || 'forward') as ExecMode;
  if (execMode !== 'forward' && execMode !== 'relay') {
    process.stderr.write(`balancer: SHOAL_BALANCER_EXEC_MODE = ${JSON.stringify(execMode)}: must be forward or relay\n`);
    process.exit(2);
  }

  const log = createLogger({ svc: 'balancer' }, cfg.logLevel);
  installCrashGuards(log);
  const nc = await connectNats({ ...cfg.nats, name: cfg.nats.name ?? `shoal-balancer${balancerId ? '-' + balancerId : ''}` }, log);
  const balancer = new Balancer(nc, log, { ...cfg.balancer, prefix: cfg.prefix, balancerId, execMode });
  let stopping = false;
  // Filled in once started; a signal during start-up stops what exists so far.
  const started: { http?: Awaited<ReturnType<typeof startHttp>> } = {};
  onShutdown(async () => {
    stopping = true;
    await balancer.stop();
    await started.http?.close();
    await nc.drain().catch(() => {});
    return 0;
  }, log);
  await balancer.start();
  const http = await startHttp({
    host: cfg.http.host,
    port: cfg.http.port,
    registry: balancer.metrics.registry,
    health: () => ({ ok: !nc.isClosed() && !stopping, balancerId: balancer.balancerId }),
    routes: {
      '/api/v1/balancer/status': () => balancer.status(),
      // The Weaviate pool design's stats, cluster-wide: summed over every node that has a weaviate pool.
      '/vector-store/pool/stats': (q) => balancer.vectorStoreStats(q.get('pool') ?? undefined),
    },
    log,
  });
  started.http = http;
  // One machine-readable line for scripts and tests that start balancers.
  log.info('listening', { balancerId: balancer.balancerId, httpPort: http?.port ?? null });
  void nc.closed().then((err) => {
    if (!stopping) {
      log.error('nats connection closed', { err: err?.message });
      process.exit(1);
    }
  });
}

main().catch((err) => {
  process.stderr.write(`balancer: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
