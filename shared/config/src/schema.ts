import convict from 'convict';
import { parseDuration, parseSize } from './units.js';
import { DRIVERS, LOG_LEVELS, STRATEGIES } from './types.js';

/** A convict property; `min`/`max` are our own bounds, read by the formats below. */
export interface Leaf extends convict.SchemaObj {
  min?: number;
  max?: number;
}
export interface Section {
  [key: string]: Leaf | Section;
}
export const isLeaf = (n: Leaf | Section): n is Leaf => 'default' in n;

const bounds = (s: Leaf, unit = '') =>
  s.min !== undefined && s.max !== undefined ? ` (${s.min}${unit} to ${s.max}${unit})`
  : s.min !== undefined ? ` (at least ${s.min}${unit})` : '';
const within = (v: unknown, s: Leaf): v is number =>
  typeof v === 'number' && Number.isFinite(v) && v >= (s.min ?? -Infinity) && v <= (s.max ?? Infinity);
const must = (ok: boolean, why: string) => {
  if (!ok) throw new Error(why);
};
// Coercers leave what they cannot read untouched: convict calls them while
// merging, where a throw would lose the key; the validator then rejects it.
const attempt = (parse: (v: string) => unknown) => (v: string) => {
  try {
    return parse(v);
  } catch {
    return v;
  }
};
const number = (v: string) => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new Error();
  return n;
};
const BOOLS: Record<string, boolean> = { true: true, false: false, yes: true, no: false, on: true, off: false, '1': true, '0': false };

convict.addFormats({
  'shoal-int': {
    coerce: attempt(number),
    validate: (v, s) => must(Number.isInteger(v) && within(v, s), `must be an integer${bounds(s)}`),
  },
  'shoal-number': {
    coerce: attempt(number),
    validate: (v, s) => must(within(v, s), `must be a number${bounds(s)}`),
  },
  'shoal-bool': {
    coerce: (v: string) => BOOLS[v.trim().toLowerCase()] ?? v,
    validate: (v) => must(typeof v === 'boolean', 'must be true or false'),
  },
  'shoal-duration': {
    coerce: attempt(parseDuration),
    validate: (v, s) => must(within(v, s), `must be a duration like 300ms, 30s, 5m, 1h${bounds(s, 'ms')}`),
  },
  'shoal-size': {
    coerce: attempt(parseSize),
    validate: (v, s) => must(Number.isInteger(v) && within(v, s), `must be a size like 512KB, 100MB, 1GB${bounds(s, ' B')}`),
  },
  'shoal-policies': {
    coerce: attempt((v: string) => JSON.parse(v) as unknown),
    validate: (v) => { readPolicies(v); },
  },
  'shoal-names': {
    coerce: (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean),
    validate: (v) => must(v === null || (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' && TOKEN.test(x))), 'must be a non-empty list of pool names (A-Z a-z 0-9 _ -)'),
  },
  'shoal-list': {
    coerce: (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean),
    validate: (v) => must(Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' && x !== ''), 'must be a URL or a non-empty list of URLs'),
  },
});

/** Ping endpoints: all name the node's NATS ping subject (`<prefix>.node.<id>.ping`). */
export const PING_ENDPOINTS = ['/health', '/healthz', 'ping'];

convict.addFormats({
  'shoal-health-checks': {
    validate: (v) => {
      must(Array.isArray(v), 'must be a list of checks ({type: ping|response_time|memory_usage, ...})');
      (v as unknown[]).forEach((c, i) => {
        const at = `item ${i}`;
        must(c !== null && typeof c === 'object' && !Array.isArray(c), `${at}: must be a mapping with a type`);
        const o = c as Record<string, unknown>;
        const allowed: Record<string, string[]> = { ping: ['endpoint'], response_time: ['max_latency'], memory_usage: ['max_usage'] };
        must(typeof o.type === 'string' && Object.hasOwn(allowed, o.type), `${at}: type must be one of ping, response_time, memory_usage`);
        const extra = Object.keys(o).find((k) => k !== 'type' && !allowed[o.type as string]!.includes(k));
        must(extra === undefined, `${at}: unknown key ${extra} for a ${String(o.type)} check`);
        if (o.type === 'ping' && o.endpoint != null) must(PING_ENDPOINTS.includes(String(o.endpoint)), `${at}: endpoint must be one of ${PING_ENDPOINTS.join(', ')} (the ping is a NATS round trip to the node)`);
        if (o.type === 'response_time') {
          let ms = NaN;
          try { ms = parseDuration(o.max_latency ?? ''); } catch { /* reported below */ }
          must(ms > 0, `${at}: max_latency must be a duration like 100ms`);
        }
        if (o.type === 'memory_usage') must(parsePercent(o.max_usage) !== undefined, `${at}: max_usage must be a percentage like 80% (0-100]`);
      });
    },
  },
});

/** `80%`, `80` or 80 -> 80; undefined when not a percentage in (0, 100]. */
export function parsePercent(v: unknown): number | undefined {
  const m = typeof v === 'number' ? [String(v), String(v)] : typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*%?\s*$/.exec(v) : null;
  const n = m ? Number(m[1]) : NaN;
  return Number.isFinite(n) && n > 0 && n <= 100 ? n : undefined;
}

const oneOf = (values: readonly string[]) => (v: unknown) =>
  must(values.includes(v as string), `must be one of ${values.join(', ')}`);
const matches = (re: RegExp, what: string) => (v: unknown) =>
  must(typeof v === 'string' && re.test(v), `must be ${what}`);

const int = (d: number, doc: string, min = 0, max?: number): Leaf => ({ default: d, format: 'shoal-int', doc, min, max });
const num = (d: number, doc: string, min = 0, max?: number): Leaf => ({ default: d, format: 'shoal-number', doc, min, max });
const bool = (d: boolean, doc: string): Leaf => ({ default: d, format: 'shoal-bool', doc });
const dur = (d: string, doc: string, min = 0): Leaf => ({ default: d, format: 'shoal-duration', doc, min });
const size = (d: string, doc: string): Leaf => ({ default: d, format: 'shoal-size', doc, min: 1 });
const str = (env: string, doc: string, sensitive = false): Leaf => ({ default: null, nullable: true, format: String, env, doc, sensitive });

export const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

export const POLICY_METRICS = ['cpu_usage', 'memory_usage', 'request_rate', 'queue_length'] as const;
export type PolicyMetric = (typeof POLICY_METRICS)[number];
/** One of the design's `scaling_policies`, read. */
export interface ScalingPolicy {
  name: string;
  metric: PolicyMetric;
  up?: { threshold: number; increment: number };
  down?: { threshold: number; decrement: number };
  /** The design's ScalingCondition.Duration: the condition must hold this long; 0 = at once. */
  durationMs: number;
}

/** Check and read `scaling_policies` (a list); throws with the first problem. */
export function readPolicies(v: unknown): ScalingPolicy[] {
  if (!Array.isArray(v)) throw new Error('must be a list of policies');
  const isMap = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  const names = new Set<string>();
  return v.map((p, i) => {
    const at = `[${i}]`;
    if (!isMap(p)) throw new Error(`${at} must be a mapping`);
    const bad = Object.keys(p).find((k) => !['name', 'metric', 'scale_up', 'scale_down', 'duration'].includes(k));
    if (bad) throw new Error(`${at}.${bad}: unknown key; expected name, metric, scale_up, scale_down, duration`);
    if (typeof p.name !== 'string' || p.name === '') throw new Error(`${at}.name must be a non-empty string`);
    if (names.has(p.name)) throw new Error(`${at}.name ${p.name} is used twice`);
    names.add(p.name);
    if (!POLICY_METRICS.includes(p.metric as PolicyMetric)) throw new Error(`${at}.metric must be one of ${POLICY_METRICS.join(', ')}`);
    const step = (k: 'scale_up' | 'scale_down', by: 'increment' | 'decrement') => {
      const s = p[k];
      if (s === undefined || s === null) return undefined;
      if (!isMap(s)) throw new Error(`${at}.${k} must be a mapping with threshold and ${by}`);
      const extra = Object.keys(s).find((x) => x !== 'threshold' && x !== by);
      if (extra) throw new Error(`${at}.${k}.${extra}: unknown key; expected threshold, ${by}`);
      const t = s.threshold, n = s[by];
      if (typeof t !== 'number' || !Number.isFinite(t) || t < 0) throw new Error(`${at}.${k}.threshold must be a number >= 0`);
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new Error(`${at}.${k}.${by} must be an integer >= 1`);
      return { threshold: t, n };
    };
    const up = step('scale_up', 'increment');
    const down = step('scale_down', 'decrement');
    if (!up && !down) throw new Error(`${at} needs scale_up or scale_down`);
    if (up && down && down.threshold >= up.threshold) throw new Error(`${at}: scale_down.threshold (${down.threshold}) must be below scale_up.threshold (${up.threshold})`);
    let durationMs = 0;
    if (p.duration !== undefined && p.duration !== null) {
      try { durationMs = parseDuration(p.duration); } catch { throw new Error(`${at}.duration must be a duration like 30s`); }
    }
    return {
      name: p.name, metric: p.metric as PolicyMetric, durationMs,
      ...(up ? { up: { threshold: up.threshold, increment: up.n } } : {}),
      ...(down ? { down: { threshold: down.threshold, decrement: down.n } } : {}),
    };
  });
}
/** The design's `health_check.checks`. */
export const DEFAULT_HEALTH_CHECKS = [
  { type: 'ping', endpoint: '/health' },
  { type: 'response_time', max_latency: '100ms' },
  { type: 'memory_usage', max_usage: '80%' },
];

/** Everything but the pools: `nats`, `jetstream`, `node`, `balancer`, `autoscaler`, `health_check`. Only these keys read environment variables named in the schema. */
export const NODE_SCHEMA: Section = {
  nats: {
    url: { default: 'nats://127.0.0.1:4222', format: 'shoal-list', env: 'SHOAL_NATS_URL', doc: 'NATS server URL(s); a list or comma-separated' },
    user: str('SHOAL_NATS_USER', 'user name'),
    pass: str('SHOAL_NATS_PASS', 'password', true),
    token: str('SHOAL_NATS_TOKEN', 'auth token', true),
    nkey_seed_file: str('SHOAL_NATS_NKEY_SEED_FILE', 'file holding an NKey seed'),
    creds_file: str('SHOAL_NATS_CREDS', 'JWT credentials file'),
    tls: {
      ca_file: str('SHOAL_NATS_TLS_CA', 'CA certificate'),
      cert_file: str('SHOAL_NATS_TLS_CERT', 'client certificate'),
      key_file: str('SHOAL_NATS_TLS_KEY', 'client key'),
    },
    name: { default: null, nullable: true, format: String, doc: 'connection name shown by the NATS server' },
  },
  jetstream: {
    replicas: { default: null, nullable: true, format: 'shoal-int', min: 1, max: 5, env: 'SHOAL_JETSTREAM_REPLICAS', doc: 'replicas of the KV buckets Shoal creates; unset = 3 on a cluster of 3 or more servers, else 1' },
    storage: { default: 'file', format: oneOf(['file', 'memory']), env: 'SHOAL_JETSTREAM_STORAGE', doc: 'storage of the KV buckets Shoal creates: file or memory' },
    domain: { default: null, nullable: true, format: matches(/^[A-Za-z0-9_-]{1,64}$/, '1-64 of A-Z a-z 0-9 _ -'), env: 'SHOAL_JETSTREAM_DOMAIN', doc: 'JetStream domain to use (leaf nodes, superclusters); unset = the account\'s own' },
  },
  node: {
    id: { default: null, nullable: true, format: matches(TOKEN, '1-64 of A-Z a-z 0-9 _ -'), env: 'SHOAL_NODE_ID', doc: 'node id; unset = a fresh ULID' },
    pools: { default: null, nullable: true, format: 'shoal-names', env: 'SHOAL_NODE_POOLS', doc: 'the pools of this file a pool-node serves; unset = all' },
    prefix: { default: 'shoal', format: matches(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'NATS subject tokens joined by dots'), env: 'SHOAL_PREFIX', doc: 'subject prefix' },
    http_host: { default: '127.0.0.1', format: matches(/./, 'a host name or address'), env: 'SHOAL_HTTP_HOST', doc: 'HTTP bind address' },
    http_port: { ...int(8080, 'HTTP port; 0 = ephemeral, -1 = no HTTP server', -1, 65535), env: 'SHOAL_HTTP_PORT' },
    heartbeat_interval: { ...dur('1s', 'heartbeat period', 1), env: 'SHOAL_HEARTBEAT_INTERVAL' },
    drain_grace: { ...dur('30s', 'how long a draining node waits for leases to come back'), env: 'SHOAL_DRAIN_GRACE' },
    max_concurrent_requests: { ...int(10000, 'node-wide cap on requests in flight', 1), env: 'SHOAL_MAX_CONCURRENT_REQUESTS' },
    log_level: { default: 'info', format: oneOf(LOG_LEVELS), env: 'SHOAL_LOG_LEVEL', doc: 'debug, info, warn or error' },
    memory_limit: { default: null, nullable: true, format: 'shoal-size', min: 1, env: 'SHOAL_NODE_MEMORY_LIMIT', doc: "the node's memory limit (memory_usage checks); unset = the cgroup's limit, else the machine's memory" },
  },
  health_check: {
    enabled: { ...bool(true, 'probe nodes and publish verdicts (the health-checker process)'), env: 'SHOAL_HEALTH_CHECK_ENABLED' },
    interval: { default: null, nullable: true, format: 'shoal-duration', min: 1, env: 'SHOAL_HEALTH_CHECK_INTERVAL', doc: "probe period; unset = the shortest load_balancing.health_check_interval of the node's pools" },
    timeout: dur('5s', 'deadline of one probe', 1),
    failure_threshold: int(3, 'consecutive failed rounds before unhealthy', 1),
    recovery_threshold: int(2, 'consecutive good rounds before healthy again', 1),
    drain_after: dur('5m', 'a node unhealthy this long drains itself; 0 = never'),
    checks: { default: DEFAULT_HEALTH_CHECKS, format: 'shoal-health-checks', doc: 'ping, response_time (max_latency), memory_usage (max_usage)' },
  },
  autoscaler: {
    lease_ttl: { ...dur('2s', 'leader lease: a follower takes over this long after the leader stops renewing', 300), env: 'SHOAL_AUTOSCALER_LEASE_TTL' },
    interval: { ...dur('1s', 'decision tick: observe, decide, act', 50), env: 'SHOAL_AUTOSCALER_INTERVAL' },
  },
  balancer: {
    strategy: { default: 'p2c', format: oneOf(STRATEGIES), env: 'SHOAL_BALANCER_STRATEGY', doc: 'placement of acquires on nodes' },
    suspect_after: int(3, 'missed heartbeats before a node is suspect', 1),
    gone_after: int(5, 'missed heartbeats before a node is gone', 1),
    circuit_failure_threshold: int(5, 'consecutive failures that open a node circuit', 1),
    circuit_cooldown: dur('5s', 'open circuit time before a trial request'),
    performance_weights: {
      latency: num(0.4, 'performance_based weight', 0, 1),
      throughput: num(0.3, 'performance_based weight', 0, 1),
      error_rate: num(0.2, 'performance_based weight', 0, 1),
      resource: num(0.1, 'performance_based weight', 0, 1),
    },
  },
};

/**
 * Keys of `session_pool` (defaults for every pool). The defaults are the
 * design document's block, except initial_size (unset = min_size); the keys
 * it lacks are the `+` ones in docs.
 */
export const SHARED_SCHEMA: Section = {
  min_size: int(10, 'resources kept even when idle'),
  max_size: int(100, 'hard cap on resources on this node', 1),
  initial_size: { default: null, nullable: true, format: 'shoal-int', min: 0, doc: 'resources created at start; unset = min_size' },
  max_waiting_clients: int(1000, 'queued acquires before POOL_EXHAUSTED'),
  acquire_timeout: dur('30s', 'acquire deadline when the client gives none', 1),
  lease_ttl: dur('60s', 'lease lifetime unless renewed', 1),
  weight: num(1, 'placement weight of this node for this pool'),
  auto_scaling: {
    enabled: bool(true, 'let the autoscaler resize the pool'),
    scale_up_threshold: num(0.8, 'utilization that grows the pool', 0, 1),
    scale_down_threshold: num(0.3, 'utilization that shrinks the pool', 0, 1),
    scale_up_increment: int(5, 'resources added per step', 1),
    scale_down_increment: int(2, 'resources removed per step', 1),
    cooldown_period: dur('30s', 'minimum time between steps'),
    stabilization_window: dur('60s', 'a scale-down happens only when every tick of this window asked for one'),
    predictive: bool(false, 'create ahead of a rising demand, looking one create latency ahead'),
    scale_down_to_fit: bool(false, 'a stabilized scale-down removes at least scale_down_increment and, far below the threshold, as many more as bring the window\'s peak demand to the middle of the band'),
  },
  scaling_policies: { default: [], format: 'shoal-policies', doc: 'the design\'s scaling_policies: name, metric, scale_up {threshold, increment}, scale_down {threshold, decrement}, duration' },
  load_balancing: {
    strategy: { default: 'weighted_round_robin', format: oneOf(STRATEGIES), doc: 'placement strategy for this pool' },
    health_check_interval: dur('30s', 'health probe period', 1),
    circuit_breaker_enabled: bool(true, 'skip nodes whose circuit is open'),
  },
  session_management: {
    enable_reuse: bool(true, 'hand released resources to later clients'),
    idle_timeout: dur('300s', 'idle time before an extra resource is destroyed', 1),
    max_lifetime: dur('3600s', 'age at which a resource is retired', 1),
    lifetime_jitter: num(0.1, 'fraction of max_lifetime taken off at random', 0, 1),
    max_reuse_count: int(100, 'leases per resource; 0 = unlimited'),
    context_reset: bool(true, 'reset a resource (e.g. /clear) before reuse'),
    cleanup_interval: dur('60s', 'period of the idle/lifetime sweep', 1),
    validate_on_return: bool(true, 'validate a resource when it comes back'),
    validate_skip_window: dur('500ms', 'skip validation if validated this recently'),
    // At most 1024: every parked key (up to 128 characters) rides in every heartbeat, which must stay under NATS max_payload.
    max_parked: int(16, 'resources kept with their context for a key (release with park); 0 = parking off; at most 1024', 0, 1024),
    park_ttl: dur('10m', 'a parked resource not claimed within this is reset and reused', 1),
  },
  resource_limits: {
    max_memory_per_session: size('100MB', 'resource above this is destroyed'),
    max_total_memory: size('1GB', 'no new resources above this'),
    max_concurrent_requests: int(1000, 'requests in flight in this pool', 1),
    max_payload: size('1MB', 'largest request payload'),
  },
  max_concurrent_creates: { default: null, nullable: true, format: 'shoal-int', min: 1, max: 100_000, doc: 'creates in flight on one node for this pool, whatever the target; unset = the driver default (claude-cli 4, weaviate 16, synthetic 64)' },
  create: {
    timeout: dur('10s', 'deadline of one create', 1),
    retry_base: dur('100ms', 'first backoff after a failed create', 1),
    retry_max: dur('10s', 'backoff ceiling', 1),
  },
};

/** A pool block: `session_pool` keys plus the two that only make sense per pool. */
export const POOL_SCHEMA: Section = {
  driver: { default: null, format: oneOf(DRIVERS), doc: 'synthetic, claude-cli or weaviate' },
  options: { default: {}, format: Object, doc: 'driver options, passed through as written' },
  ...SHARED_SCHEMA,
};

/** Pools when the file has no `pools` key: one light synthetic pool. */
export const DEFAULT_POOLS = {
  synthetic: {
    driver: 'synthetic',
    min_size: 2,
    max_size: 10,
    initial_size: 2,
    options: { create_latency: '5ms', exec_latency: '1ms', failure_rate: 0 },
  },
};

/** The design's AICLI_SESSION_POOL_<suffix> variables and the pool key each sets. */
export const AICLI_ENV: Record<string, string> = {
  MIN_SIZE: 'min_size',
  MAX_SIZE: 'max_size',
  INITIAL_SIZE: 'initial_size',
  AUTO_SCALING: 'auto_scaling.enabled',
  LOAD_BALANCING: 'load_balancing.strategy',
  IDLE_TIMEOUT: 'session_management.idle_timeout',
  MAX_LIFETIME: 'session_management.max_lifetime',
  CLEANUP_INTERVAL: 'session_management.cleanup_interval',
  ENABLE_REUSE: 'session_management.enable_reuse',
  MAX_CONCURRENT_REQUESTS: 'resource_limits.max_concurrent_requests',
};

/**
 * The weaviate design's variables and the pool key each sets, on pools whose
 * driver is `weaviate` (instead of AICLI_SESSION_POOL_*). `seconds`: a bare
 * number is seconds, as in the design (3600 = 1h); a unit may be written.
 * `bool` and `port` are checked here so a bad value names its variable.
 */
export const WEAVIATE_ENV: Record<string, { path: string; read?: 'seconds' | 'bool' | 'port'; sensitive?: boolean }> = {
  VECTOR_STORE_USE_POOL: { path: 'options.use_pool', read: 'bool' },
  VECTOR_STORE_MIN_CONNECTIONS: { path: 'min_size' },
  VECTOR_STORE_MAX_CONNECTIONS: { path: 'max_size' },
  VECTOR_STORE_CONNECTION_LIFETIME: { path: 'session_management.max_lifetime', read: 'seconds' },
  VECTOR_STORE_HEALTH_CHECK_INTERVAL: { path: 'options.health_check_interval', read: 'seconds' },
  WEAVIATE_HOST: { path: 'options.host' },
  WEAVIATE_PORT: { path: 'options.port', read: 'port' },
  WEAVIATE_GRPC_HOST: { path: 'options.grpc_host' },
  WEAVIATE_GRPC_PORT: { path: 'options.grpc_port', read: 'port' },
  WEAVIATE_API_KEY: { path: 'options.api_key', sensitive: true },
};

/** Every property of a schema with its dotted path. */
export function leaves(s: Section, base = ''): [string, Leaf][] {
  return Object.entries(s).flatMap(([k, n]): [string, Leaf][] => {
    const path = base ? `${base}.${k}` : k;
    return isLeaf(n) ? [[path, n]] : leaves(n, path);
  });
}
