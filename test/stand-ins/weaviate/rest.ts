/**
 * REST side of the stand-in: what weaviate-client v3 calls over HTTP.
 *   GET  /v1/meta                          (twice at connect; version >= 1.27.0 or connect fails)
 *   GET  /v1/.well-known/live | ready      (isLive / isReady)
 *   GET  /v1/schema, POST /v1/schema, GET|PUT|DELETE /v1/schema/{class}
 *   POST /v1/objects; GET|HEAD|PUT|PATCH|DELETE /v1/objects/{class}/{id} (and /v1/objects/{id})
 *   GET  /v1/objects?class=..&limit=..
 * Errors are Weaviate's shape: {"error":[{"message":"..."}]}.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import { className, Store, WeaviateError, type StoredObject } from './store.js';
import { defaultVectorName } from './grpc.js';

export interface RestOptions {
  version: string;
  grpcMaxMessageSize: number;
  /** Health answers (down = not listening at all is handled by the server). */
  ready: () => boolean;
  /** Starting up: /v1/meta answers 503. */
  starting: () => boolean;
  gate: (kind: 'data' | 'health', authorization: string | undefined) => Promise<void>;
}

/** Thrown by the gate to answer with a status (injected error, auth). */
export class HttpFault extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    // An explicit length keeps the connection alive (without one Node closes it after a HEAD answer).
    res.writeHead(status, status === 204 ? {} : { 'content-length': '0' });
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const errorBody = (message: string) => ({ error: [{ message }] });

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  if (chunks.length === 0) return {};
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new WeaviateError(400, 'request body is not valid JSON');
  }
}

function vectorsFromRest(body: Record<string, unknown>, store: Store, cls: string): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  const def = defaultVectorName(store.getClass(cls));
  if (Array.isArray(body.vector) && body.vector.length > 0) out[def] = body.vector as number[];
  if (body.vectors && typeof body.vectors === 'object') {
    for (const [k, v] of Object.entries(body.vectors as Record<string, unknown>)) {
      if (Array.isArray(v) && v.length > 0) out[k] = (Array.isArray(v[0]) ? v[0] : v) as number[];
    }
  }
  return out;
}

export function objectJson(o: StoredObject, store: Store): Record<string, unknown> {
  const def = defaultVectorName(store.getClass(o.class));
  const named = store.getClass(o.class)?.vectorConfig !== undefined;
  return {
    class: o.class,
    id: o.id,
    properties: o.properties,
    creationTimeUnix: o.created,
    lastUpdateTimeUnix: o.updated,
    ...(o.tenant ? { tenant: o.tenant } : {}),
    ...(!named && o.vectors[def] ? { vector: o.vectors[def] } : {}),
    ...(named && Object.keys(o.vectors).length ? { vectors: o.vectors } : {}),
  };
}

export function restHandler(store: Store, o: RestOptions) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    const auth = req.headers.authorization;
    try {
      if (path === '/v1/.well-known/live' || path === '/v1/.well-known/ready' || path === '/v1/meta') {
        await o.gate('health', auth);
        if (path === '/v1/meta' && o.starting()) return send(res, 503);
        if (path === '/v1/meta') return send(res, 200, { hostname: `http://${hostname()}`, modules: {}, version: o.version, grpcMaxMessageSize: o.grpcMaxMessageSize });
        if (path === '/v1/.well-known/ready' && !o.ready()) return send(res, 503);
        return send(res, 200);
      }
      if (path === '/v1/.well-known/openid-configuration') return send(res, 404);
      await o.gate('data', auth);

      // ---- schema
      if (path === '/v1/schema') {
        if (method === 'GET') return send(res, 200, { classes: [...store.classes.values()] });
        if (method === 'POST') return send(res, 200, store.createClass(await readJson(req)));
      }
      let m = /^\/v1\/schema\/([^/]+)$/.exec(path);
      if (m) {
        const name = decodeURIComponent(m[1]!);
        if (method === 'GET') {
          const cls = store.getClass(name);
          return cls ? send(res, 200, cls) : send(res, 404);
        }
        if (method === 'DELETE') { store.deleteClass(name); return send(res, 200); }
        if (method === 'PUT') {
          const cls = store.getClass(name);
          if (!cls) return send(res, 404);
          const body = await readJson(req);
          if (typeof body.description === 'string') cls.description = body.description;
          return send(res, 200, cls);
        }
      }

      // ---- objects
      if (path === '/v1/objects' && method === 'POST') {
        const body = await readJson(req);
        const cls = typeof body.class === 'string' ? className(body.class) : '';
        if (!cls) throw new WeaviateError(422, 'invalid object: class is required');
        store.ensureClass(cls);
        const obj = store.put(cls, { id: typeof body.id === 'string' ? body.id : undefined, properties: (body.properties ?? {}) as Record<string, unknown>, vectors: vectorsFromRest(body, store, cls), tenant: typeof body.tenant === 'string' ? body.tenant : undefined }, 'insert');
        return send(res, 200, objectJson(obj, store));
      }
      if (path === '/v1/objects' && method === 'GET') {
        const cls = url.searchParams.get('class');
        const limit = Number(url.searchParams.get('limit') ?? 25);
        const all = cls ? [...store.objectsOf(cls).values()] : [...store.objects.values()].flatMap((x) => [...x.values()]);
        return send(res, 200, { objects: all.slice(0, limit).map((x) => objectJson(x, store)), totalResults: Math.min(limit, all.length) });
      }
      m = /^\/v1\/objects\/(?:([^/]+)\/)?([0-9a-fA-F-]{36})$/.exec(path);
      if (m) {
        const id = m[2]!.toLowerCase();
        const cls = m[1] ? className(decodeURIComponent(m[1])) : [...store.objects.entries()].find(([, objs]) => objs.has(id))?.[0];
        const objs = cls ? store.objects.get(cls) : undefined;
        const found = objs?.get(id);
        switch (method) {
          case 'HEAD': return send(res, found ? 204 : 404);
          case 'GET': return found ? send(res, 200, objectJson(found, store)) : send(res, 404);
          case 'DELETE':
            if (!found) return send(res, 404);
            objs!.delete(id);
            return send(res, 204);
          case 'PUT':
          case 'PATCH': {
            if (!cls || !found) return send(res, 404, errorBody(`no object with id '${id}'`));
            const body = await readJson(req);
            const obj = store.put(cls, { id, properties: (body.properties ?? {}) as Record<string, unknown>, vectors: vectorsFromRest(body, store, cls) }, method === 'PUT' ? 'replace' : 'merge');
            return method === 'PUT' ? send(res, 200, objectJson(obj, store)) : send(res, 204);
          }
          default: break;
        }
      }
      if (path === '/v1/graphql') return send(res, 422, errorBody('GraphQL is not implemented by the weaviate stand-in (use a client that speaks gRPC, Weaviate >= 1.29)'));
      return send(res, 404, errorBody(`${method} ${path}: not found`));
    } catch (err) {
      if (err instanceof HttpFault) return send(res, err.status, errorBody(err.message));
      if (err instanceof WeaviateError) return send(res, err.status, errorBody(err.message));
      return send(res, 500, errorBody((err as Error).message));
    }
  };
}
