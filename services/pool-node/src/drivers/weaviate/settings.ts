import { ConfigError, parseDuration } from '@shoal/config';

/**
 * The weaviate driver's options (a pool's `options:` block), with the
 * environment already layered in by @shoal/config for pools whose driver is
 * `weaviate`: WEAVIATE_HOST → host, WEAVIATE_PORT → port, WEAVIATE_GRPC_HOST →
 * grpc_host, WEAVIATE_GRPC_PORT → grpc_port, WEAVIATE_API_KEY → api_key,
 * VECTOR_STORE_USE_POOL → use_pool, VECTOR_STORE_HEALTH_CHECK_INTERVAL (s) →
 * health_check_interval. Values may be strings (from the environment).
 *
 *   host: localhost          port: 8080        secure: false     path: ''
 *   grpc_host: <host>        grpc_port: 50051  grpc_secure: <secure>
 *   api_key: ...  | api_key_env: NAME_OF_VARIABLE_HOLDING_IT
 *   headers: { X-OpenAI-Api-Key: ... }
 *   init_timeout: 2s  query_timeout: 30s  insert_timeout: 90s   (weaviate-client's own defaults)
 *   use_pool: true           health_check_interval: 60s
 *   skip_init_checks: false
 */
export interface WeaviateSettings {
  httpHost: string;
  httpPort: number;
  httpSecure: boolean;
  httpPath: string;
  grpcHost: string;
  grpcPort: number;
  grpcSecure: boolean;
  apiKey: string | undefined;
  headers: Record<string, string>;
  /** weaviate-client takes these in seconds; kept in ms here. */
  initTimeoutMs: number;
  queryTimeoutMs: number;
  insertTimeoutMs: number;
  /** false: the design's legacy mode, a fresh client per operation. */
  usePool: boolean;
  /** Period of the idle-connection health check (isLive + isReady); 0 = off. */
  healthCheckIntervalMs: number;
  skipInitChecks: boolean;
}

export const OPTION_KEYS = [
  'host', 'port', 'secure', 'path', 'grpc_host', 'grpc_port', 'grpc_secure', 'api_key', 'api_key_env', 'headers',
  'init_timeout', 'query_timeout', 'insert_timeout', 'use_pool', 'health_check_interval', 'skip_init_checks',
] as const;

const BOOLS: Record<string, boolean> = { true: true, false: false, yes: true, no: false, on: true, off: false, '1': true, '0': false };

export function parseSettings(o: Record<string, unknown>, pool: string, env: NodeJS.ProcessEnv = process.env): WeaviateSettings {
  const key = (k: string) => `pools.${pool}.options.${k}`;
  const bad = (k: string, why: string): never => { throw new ConfigError(key(k), k === 'api_key' ? '[redacted]' : o[k], 'pool options', why); };
  const unknown = Object.keys(o).find((k) => !(OPTION_KEYS as readonly string[]).includes(k));
  if (unknown) bad(unknown, `unknown weaviate option; expected one of ${OPTION_KEYS.join(', ')}`);

  const str = (k: string, d: string): string => {
    const v = o[k];
    if (v === undefined || v === null || v === '') return d;
    return typeof v === 'string' ? v : bad(k, 'must be a string');
  };
  const bool = (k: string, d: boolean): boolean => {
    const v = o[k];
    if (v === undefined || v === null || v === '') return d;
    if (typeof v === 'boolean') return v;
    const b = typeof v === 'string' ? BOOLS[v.trim().toLowerCase()] : undefined;
    return b ?? bad(k, 'must be true or false');
  };
  const port = (k: string, d: number): number => {
    const v = o[k];
    if (v === undefined || v === null || v === '') return d;
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : NaN;
    return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : bad(k, 'must be a port number (1 to 65535)');
  };
  const dur = (k: string, d: string, min: number): number => {
    const v = o[k] ?? d;
    let ms: number;
    try {
      ms = parseDuration(v, key(k));
    } catch {
      return bad(k, 'must be a duration like 500ms, 2s, 1m (a bare number is ms)');
    }
    return ms >= min ? ms : bad(k, `must be at least ${min} ms`);
  };

  const host = str('host', 'localhost');
  if (/[/:]/.test(host) && !/^\[.*\]$/.test(host)) bad('host', 'a host name or address without scheme or port (use port, secure)');
  const secure = bool('secure', false);
  const headers: Record<string, string> = {};
  if (o.headers !== undefined && o.headers !== null) {
    if (typeof o.headers !== 'object' || Array.isArray(o.headers)) bad('headers', 'must be a mapping of header name to value');
    for (const [h, v] of Object.entries(o.headers as Record<string, unknown>)) {
      if (typeof v !== 'string' && typeof v !== 'number') bad('headers', `header ${h} must be a string`);
      headers[h] = String(v);
    }
  }
  let apiKey = str('api_key', '') || undefined;
  const keyEnv = str('api_key_env', '');
  if (!apiKey && keyEnv) {
    apiKey = env[keyEnv] || undefined;
    if (!apiKey) bad('api_key_env', `names variable ${keyEnv}, which is not set`);
  }
  const path = str('path', '');
  if (path && !path.startsWith('/')) bad('path', 'must start with /');
  return {
    httpHost: host,
    httpPort: port('port', 8080),
    httpSecure: secure,
    httpPath: path,
    grpcHost: str('grpc_host', host),
    grpcPort: port('grpc_port', 50051),
    grpcSecure: bool('grpc_secure', secure),
    apiKey,
    headers,
    initTimeoutMs: dur('init_timeout', '2s', 1),
    queryTimeoutMs: dur('query_timeout', '30s', 1),
    insertTimeoutMs: dur('insert_timeout', '90s', 1),
    usePool: bool('use_pool', true),
    healthCheckIntervalMs: dur('health_check_interval', '60s', 0),
    skipInitChecks: bool('skip_init_checks', false),
  };
}

/** host:port of each endpoint, for messages and stats (never the key). */
export function describeEndpoints(s: WeaviateSettings): string {
  return `${s.httpSecure ? 'https' : 'http'}://${s.httpHost}:${s.httpPort}${s.httpPath} + grpc${s.grpcSecure ? 's' : ''}://${s.grpcHost}:${s.grpcPort}`;
}
