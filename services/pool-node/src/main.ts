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
  const all = loadConfigOrExit('pool-node');
  // `node.pools` (SHOAL_NODE_POOLS): one config file for a cluster whose pool-nodes each serve some pools.
  const cfg = all.nodePools ? { ...all, pools: Object.fromEntries(all.nodePools.map((name) => [name, all.pools[name]!])) } : all;
  const log = createLogger({ svc: 'pool-node' }, cfg.logLevel);
  installCrashGuards(log);
  const nc = await connectNats({ ...cfg.nats, name: `shoal-pool-node${cfg.nodeId ? '-' + cfg.nodeId : ''}` }, log);
  // SHOAL_MICRO=0 leaves the NATS services API out (e.g. to compare benchmarks).
  const node = new PoolNode(nc, log, { ...cfg, micro: process.env.SHOAL_MICRO !== '0' }, driverFor);
  let stopping = false;
  onShutdown(async () => {
    stopping = true;
    await node.drain(cfg.drainGraceMs, true);
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
  // Stopped during the warm-up: nothing here is ready or listening any more.
  if (stopping) return;
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
