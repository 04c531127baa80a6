import type { Msg, NatsConnection, Service } from 'nats';

/** Version every Shoal service reports in `$SRV.INFO` (the repository's version). */
export const SHOAL_VERSION = '0.1.0';

export interface ServiceSpec {
  /** e.g. `shoal-pool-node`, `shoal-balancer`, `shoal-autoscaler` (A-Z a-z 0-9 _ -). */
  name: string;
  /** Semver; default SHOAL_VERSION. */
  version?: string;
  description?: string;
  /** Shown in `$SRV.INFO`; e.g. the node id, or subjects served outside the service. */
  metadata?: Record<string, string>;
}

/**
 * Register this process with NATS's services ("micro") API, so that
 * `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (and `nats micro ls`) see it.
 * Endpoints are added on the returned service (`addEndpoint`), or through
 * `Actor.endpoint`, which guards the handler as `listen` does. Request
 * counts, errors (error replies sent with `respondError`) and processing
 * times are measured per endpoint by nats.js.
 */
export function registerService(nc: NatsConnection, spec: ServiceSpec): Promise<Service> {
  return nc.services.add({
    name: spec.name,
    version: spec.version ?? SHOAL_VERSION,
    ...(spec.description ? { description: spec.description } : {}),
    ...(spec.metadata ? { metadata: spec.metadata } : {}),
  });
}

/** nats.js's per-endpoint counters (not part of its typed API; see `addMeasuredEndpoint`). */
interface EndpointStats {
  num_requests: number;
  num_errors: number;
  processing_time: number;
  average_processing_time: number;
  countError(err: Error): void;
}

const ERROR_COUNTER = Symbol('shoal.micro.countError');

/** Count an error reply on the micro endpoint `msg` came from (no-op for other messages). */
export function countServiceError(msg: object, err: unknown): void {
  const count = (msg as { [ERROR_COUNTER]?: (e: Error) => void })[ERROR_COUNTER];
  count?.(err instanceof Error ? err : new Error(String(err)));
}

/**
 * `service.addEndpoint` with counts that mean what they say. nats.js times
 * only the synchronous part of a handler (in whole milliseconds) and counts
 * an error only when the handler throws; Shoal handlers are mostly async and
 * answer errors with a typed reply. So: the time until the handler's promise
 * settles is added (high resolution), and an error reply sent through
 * `countServiceError` counts as an error. If nats.js's internals ever change
 * shape, the endpoint still works, with nats.js's own (coarser) numbers.
 */
export function addMeasuredEndpoint(
  service: Service,
  name: string,
  opts: { subject: string; queue?: string; metadata?: Record<string, string> },
  handler: (msg: Msg) => void | Promise<void>,
): void {
  let stats: EndpointStats | undefined;
  service.addEndpoint(name, {
    subject: opts.subject,
    ...(opts.queue ? { queue: opts.queue } : {}),
    ...(opts.metadata ? { metadata: opts.metadata } : {}),
    handler: (err, msg) => {
      if (err) return;
      const t0 = process.hrtime.bigint();
      const d0 = Date.now();
      if (stats) (msg as unknown as Record<symbol, unknown>)[ERROR_COUNTER] = (e: Error) => stats!.countError(e);
      const r = handler(msg);
      if (!r || !stats) return;
      // nats.js adds the synchronous part (ms) when we return; the rest is added when the promise settles.
      const syncNs = (Date.now() - d0) * 1e6;
      const s = stats;
      void r.finally(() => {
        const total = Number(process.hrtime.bigint() - t0);
        s.processing_time += Math.max(0, total - syncNs);
        s.average_processing_time = s.num_requests > 0 ? Math.round(s.processing_time / s.num_requests) : 0;
      }).catch(() => {});
    },
  });
  const handlers = (service as unknown as { handlers?: { name?: string; stats?: EndpointStats }[] }).handlers;
  const h = Array.isArray(handlers) ? handlers.filter((x) => x.name === name).at(-1) : undefined;
  if (h?.stats && typeof h.stats.countError === 'function' && typeof h.stats.processing_time === 'number') stats = h.stats;
}
