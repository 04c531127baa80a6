#!/usr/bin/env node
import { loadConfigOrExit } from '@shoal/config';
import { isToken, SETTINGS_BUCKET } from '@shoal/protocol';
import { connectNats, createLogger, installCrashGuards, onShutdown, startHttp } from '@shoal/runtime';
import { Autoscaler } from './autoscaler.js';

/**
 * autoscaler process: config (the same file as the pool-nodes: it reads each
 * pool's auto_scaling and scaling_policies) → NATS → heartbeats heard →
 * leader election → HTTP. Any number of replicas; one leads at a time.
 * SIGTERM/SIGINT: a leader gives its lease up (a follower takes over at once), exit 0.
 *
 * Environment beyond @shoal/config: SHOAL_AUTOSCALER_ID (default a fresh ULID).
 */
async function main(): Promise<void> {
  const cfg = loadConfigOrExit('autoscaler');
  const id = process.env.SHOAL_AUTOSCALER_ID || undefined;
  if (id !== undefined && !isToken(id)) {
    process.stderr.write(`autoscaler: SHOAL_AUTOSCALER_ID = ${JSON.stringify(id)}: must be 1-64 of A-Z a-z 0-9 _ -\n`);
    process.exit(2);
  }
  const log = createLogger({ svc: 'autoscaler' }, cfg.logLevel);
  installCrashGuards(log);
  const nc = await connectNats({ ...cfg.nats, name: cfg.nats.name ?? `shoal-autoscaler${id ? '-' + id : ''}` }, log);
  const autoscaler = new Autoscaler(nc, log, {
    autoscalerId: id, prefix: cfg.prefix, settingsBucket: SETTINGS_BUCKET,
    leaseTtlMs: cfg.autoscaler.leaseTtlMs, intervalMs: cfg.autoscaler.intervalMs,
    goneAfterIntervals: cfg.balancer.goneAfterIntervals, pools: cfg.pools, jetstream: cfg.jetstream,
  });
  let stopping = false;
  const started: { http?: Awaited<ReturnType<typeof startHttp>> } = {};
  onShutdown(async () => {
    stopping = true;
    await autoscaler.stop();
    await started.http?.close();
    await nc.drain().catch(() => {});
    return 0;
  }, log);
  await autoscaler.start();
  started.http = await startHttp({
    host: cfg.http.host,
    port: cfg.http.port,
    registry: autoscaler.metrics.registry,
    health: () => ({ ok: !nc.isClosed() && !stopping, autoscalerId: autoscaler.autoscalerId, leader: autoscaler.isLeader }),
    routes: { '/api/v1/autoscaler/status': () => autoscaler.localStatus() },
    log,
  });
  log.info('listening', { autoscalerId: autoscaler.autoscalerId, httpPort: started.http?.port ?? null });
  nc.closed().then((err) => {
    if (!stopping) {
      log.error('nats connection closed', { err: err?.message });
      process.exit(1);
    }
  }).catch(() => {});
}

main().catch((err) => {
  process.stderr.write(`autoscaler: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
