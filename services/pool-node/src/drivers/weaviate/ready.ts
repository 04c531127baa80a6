import type { ShoalError } from '@shoal/protocol';
import { unavailable } from './errors.js';
import type { WeaviateSettings } from './settings.js';

/**
 * The pool's backend probe: GET /v1/.well-known/ready, as isReady() does,
 * without a client (a pool that is down has none). Weaviate answers it
 * without authentication. Bounded by `init_timeout`.
 */
export async function weaviateReady(s: WeaviateSettings, endpoint: string): Promise<{ ok: boolean; error?: ShoalError }> {
  const url = `${s.httpSecure ? 'https' : 'http'}://${s.httpHost}:${s.httpPort}${s.httpPath}/v1/.well-known/ready`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(100, s.initTimeoutMs)) });
    await res.arrayBuffer().catch(() => undefined);
    if (res.ok) return { ok: true };
    return { ok: false, error: unavailable('probe', `${url} answered ${res.status} (not ready)`, { endpoint }) };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    return { ok: false, error: unavailable('probe', e.cause?.code ?? e.cause?.message ?? e.message, { endpoint }) };
  }
}
