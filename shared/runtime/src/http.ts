import { ErrorCodes, ShoalError } from '@shoal/protocol';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './log.js';

export type Route = (query: URLSearchParams) => unknown | Promise<unknown>;

export interface HttpOptions {
  host: string;
  /** 0 = any free port; negative = do not serve. */
  port: number;
  registry: Registry;
  /** Whether /healthz answers 200; a draining or disconnected process answers 503. */
  health: () => { ok: boolean; [k: string]: unknown };
  /** Extra JSON routes by exact path, e.g. /api/v1/session-pool/status. */
  routes?: Record<string, Route>;
  log: Logger;
}

export interface HttpServer {
  port: number;
  close(): Promise<void>;
}

/** /metrics (Prometheus text), /healthz and the JSON routes; nothing else. */
export async function startHttp(o: HttpOptions): Promise<HttpServer | undefined> {
  if (o.port < 0) return undefined;
  const routes: Record<string, Route> = {
    '/metrics': () => undefined,
    '/healthz': () => o.health(),
    ...o.routes,
  };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const route = routes[url.pathname];
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET' || !route) return send(404, 'application/json', JSON.stringify({ error: 'not found' }));
    (async () => {
      if (url.pathname === '/metrics' || url.pathname === '/api/v1/metrics') {
        return send(200, o.registry.contentType, await o.registry.metrics());
      }
      const body = await route(url.searchParams);
      const code = url.pathname === '/healthz' && !(body as { ok: boolean }).ok ? 503 : 200;
      send(code, 'application/json', JSON.stringify(body));
    })().catch((err) => {
      // A bad query is the caller's mistake: 400 with the typed error, nothing logged.
      if (err instanceof ShoalError && err.code === ErrorCodes.BAD_REQUEST) return send(400, 'application/json', JSON.stringify({ error: err.toWire() }));
      o.log.warn('http route failed', { path: url.pathname, err: (err as Error).message });
      send(500, 'application/json', JSON.stringify({ error: (err as Error).message }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}
