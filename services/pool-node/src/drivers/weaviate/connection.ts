import weaviate, { type WeaviateClient } from 'weaviate-client';
import { classify, unavailable } from './errors.js';
import { describeEndpoints, type WeaviateSettings } from './settings.js';

/**
 * Opening, probing and closing one weaviate-client v3 client, with the
 * client's traps handled:
 *
 * - `skipInitChecks` + unreachable server → unhandled promise rejection: the
 *   server version is then never fetched, and every `collections.get()`
 *   starts a /v1/meta fetch nobody awaits (the aggregate helper's gRPC
 *   check); when Weaviate is down it rejects unhandled. With
 *   `skip_init_checks` we still fetch the version once here (one GET, no gRPC
 *   health check), so it is cached and a failure is this create's error.
 * - the client's own timeouts do not bound `connect` as a whole (/v1/meta
 *   uses the query timeout, 30 s by default): connect is raced against twice
 *   the init timeout, and a client that lands late is closed.
 * - `isLive()`/`isReady()` never reject but can hang as long as the query
 *   timeout: probes are raced against the init timeout.
 * - `close()` closes the gRPC channel but not the HTTP keep-alive sockets,
 *   which belong to Node's global fetch dispatcher and are shared by every
 *   client in the process (the client's `http.Agent` is never used by
 *   fetch); they are reused by the next client and idle out on their own.
 *   grpc-js likewise shares one HTTP/2 connection per target across all
 *   channels with the same options. See docs/weaviate.md for the numbers.
 */

export type Client = WeaviateClient;

function race<T>(p: Promise<T>, ms: number, onLate: (v: T) => void, err: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const t = setTimeout(() => { done = true; reject(err()); p.then(onLate, () => {}); }, ms);
    t.unref?.();
    p.then(
      (v) => { if (done) return; done = true; clearTimeout(t); resolve(v); },
      (e) => { if (done) return; done = true; clearTimeout(t); reject(e); },
    );
  });
}

export async function closeClient(c: Client | undefined): Promise<void> {
  if (!c) return;
  try {
    await c.close();
  } catch {
    // already closed or never connected: nothing to free
  }
}

export async function connect(s: WeaviateSettings): Promise<Client> {
  const where = describeEndpoints(s);
  const what = `connect to ${where}`;
  const attempt = weaviate.connectToCustom({
    httpHost: s.httpHost,
    httpPort: s.httpPort,
    httpSecure: s.httpSecure,
    httpPath: s.httpPath || undefined,
    grpcHost: s.grpcHost,
    grpcPort: s.grpcPort,
    grpcSecure: s.grpcSecure,
    authCredentials: s.apiKey ? new weaviate.ApiKey(s.apiKey) : undefined,
    headers: s.headers,
    timeout: { init: s.initTimeoutMs / 1000, query: s.queryTimeoutMs / 1000, insert: s.insertTimeoutMs / 1000 },
    skipInitChecks: s.skipInitChecks,
  });
  const limit = 2 * s.initTimeoutMs;
  let client: Client;
  try {
    client = await race(attempt, limit, (late) => { void closeClient(late); }, () => unavailable(what, `no answer within ${limit} ms`, { endpoint: where }));
  } catch (err) {
    throw classify(err, what, where);
  }
  if (s.skipInitChecks) {
    try {
      await race(client.getWeaviateVersion(), limit, () => {}, () => unavailable(what, `no answer within ${limit} ms`, { endpoint: where }));
    } catch (err) {
      await closeClient(client);
      throw classify(err, what, where);
    }
  }
  return client;
}

/** isLive() and isReady(), bounded; false on any failure. */
export async function probe(c: Client, timeoutMs: number): Promise<boolean> {
  try {
    const [live, ready] = await race(Promise.all([c.isLive(), c.isReady()]), timeoutMs, () => {}, () => new Error('probe timed out'));
    return live && ready;
  } catch {
    return false;
  }
}
