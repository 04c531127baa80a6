#!/usr/bin/env node
import { loadConfigOrExit } from '@shoal/config';
import { isToken, validators } from '@shoal/protocol';
import { connectNats, createLogger, installCrashGuards, onShutdown, startHttp } from '@shoal/runtime';
import { Balancer, type ExecMode } from './balancer.js';
import type { StatusQuery } from './status-paging.js';
import { ClusterView } from './http-api.js';

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
  // The same config as the nodes': each pool's strategy and acquire deadline, with where they came from.
  const pools = Object.fromEntries(Object.values(cfg.pools).map((p) => [p.name, {
    strategy: p.loadBalancing.strategy,
    strategySource: p.sources?.['load_balancing.strategy'],
    acquireTimeoutMs: p.acquireTimeoutMs,
    acquireTimeoutSource: p.sources?.acquire_timeout,
  }]));
  const balancer = new Balancer(nc, log, { ...cfg.balancer, strategySource: cfg.sources?.['balancer.strategy'], pools, prefix: cfg.prefix, balancerId, execMode, jetstream: cfg.jetstream, micro: env.SHOAL_MICRO !== '0' });
  let stopping = false;
  // Filled in once started; a signal during start-up stops what exists so far.
  const started: { http?: Awaited<ReturnType<typeof startHttp>>; view?: ClusterView } = {};
  onShutdown(async () => {
    stopping = true;
    started.view?.stop();
    await balancer.stop();
    await started.http?.close();
    await nc.drain().catch(() => {});
    return 0;
  }, log);
  // Before the balancer starts: the settings it reads at start include the health verdicts and targets the page shows.
  const view = new ClusterView(balancer, nc, cfg.prefix, log);
  view.start();
  started.view = view;
  await balancer.start();
  const http = await startHttp({
    host: cfg.http.host,
    port: cfg.http.port,
    registry: balancer.metrics.registry,
    health: () => ({ ok: !nc.isClosed() && !stopping, balancerId: balancer.balancerId }),
    routes: {
      // The Weaviate pool design's stats, cluster-wide: summed over every node that has a weaviate pool.
      ...view.routes((q) => balancer.vectorStoreStats(q.get('pool') ?? undefined)),
      // Paged as the status subject: ?pool=&node=&limit=&cursor= (see docs/protocol.md).
      '/api/v1/balancer/status': (q) => balancer.status(Date.now(), statusQuery(q)),
    },
    handlers: view.handlers(),
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

/** Query parameters of the HTTP status, checked as a status request on NATS would be. */
function statusQuery(q: URLSearchParams): StatusQuery {
  const raw: Record<string, unknown> = {};
  for (const k of ['pool', 'node', 'cursor']) { const v = q.get(k); if (v !== null) raw[k] = v; }
  const limit = q.get('limit');
  if (limit !== null) raw.limit = /^\d+$/.test(limit) ? Number(limit) : limit;
  return validators.status(raw, '');
}

main().catch((err) => {
  process.stderr.write(`balancer: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
