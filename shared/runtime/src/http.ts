import { ErrorCodes, ShoalError } from '@shoal/protocol';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './log.js';

export type Route = (query: URLSearchParams) => unknown | Promise<unknown>;
/** A path that writes its own answer (an HTML page, a server-sent event stream). */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse, query: URLSearchParams) => void;

export interface HttpOptions {
  host: string;
  /** 0 = any free port; negative = do not serve. */
  port: number;
  registry: Registry;
  /** Whether /healthz answers 200; a draining or disconnected process answers 503. */
  health: () => { ok: boolean; [k: string]: unknown };
  /** Extra JSON routes by exact path, e.g. /api/v1/session-pool/status. */
  routes?: Record<string, Route>;
  /** Paths that answer GET themselves, by exact path. */
  handlers?: Record<string, HttpHandler>;
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
    const handler = req.method === 'GET' && o.handlers && Object.hasOwn(o.handlers, url.pathname) ? o.handlers[url.pathname] : undefined;
    if (handler) {
      try {
        return handler(req, res, url.searchParams);
      } catch (err) {
        o.log.warn('http handler failed', { path: url.pathname, err: (err as Error).message });
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify({ error: (err as Error).message }));
      }
    }
    const route = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
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
