#!/usr/bin/env node
import { loadConfigOrExit } from '@shoal/config';
import { connectNats, createLogger, installCrashGuards, onShutdown, startHttp } from '@shoal/runtime';
import { driverFor } from './drivers/index.js';
import { PoolNode } from './node.js';
import { statusRoutes } from './routes.js';

/**
 * pool-node process: config → NATS → pools warm → HTTP → ready.
 * SIGTERM/SIGINT drain (new acquires refused, leases finish until the grace
 * period, everything destroyed) and exit 0.
 */
async function main(): Promise<void> {
  const cfg = loadConfigOrExit('pool-node');
  const log = createLogger({ svc: 'pool-node' }, cfg.logLevel);
  installCrashGuards(log);
  const nc = await connectNats({ ...cfg.nats, name: `shoal-pool-node${cfg.nodeId ? '-' + cfg.nodeId : ''}` }, log);
  const node = new PoolNode(nc, log, cfg, driverFor);
  let stopping = false;
  onShutdown(async () => {
    stopping = true;
    await node.drain(cfg.drainGraceMs);
    await node.stop();
    await http?.close();
    await nc.drain().catch(() => {});
    return 0;
  }, log);
  const http = await startHttp({
    host: cfg.http.host,
    port: cfg.http.port,
    registry: node.metrics.registry,
    health: () => ({ ok: !node.draining && !nc.isClosed() && !stopping, nodeId: node.nodeId, draining: node.draining }),
    routes: statusRoutes(node),
    log,
  });
  await node.start();
  // One machine-readable line for scripts and tests that start nodes.
  log.info('listening', { nodeId: node.nodeId, httpPort: http?.port ?? null });
  void nc.closed().then((err) => {
    if (!stopping) {
      log.error('nats connection closed', { err: err?.message });
      process.exit(1);
    }
  });
}

main().catch((err) => {
  process.stderr.write(`pool-node: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
