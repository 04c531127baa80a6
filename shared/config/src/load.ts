import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import convict from 'convict';
import { parse } from 'yaml';
import { ConfigError } from './errors.js';
import { AICLI_ENV, DEFAULT_POOLS, readPolicies, NODE_SCHEMA, parsePercent, POOL_SCHEMA, SHARED_SCHEMA, TOKEN, WEAVIATE_ENV, isLeaf, leaves, type Section } from './schema.js';
import { parseDuration } from './units.js';
import { defaultMaxConcurrentCreates, DRIVERS, type HealthCheckConfig, type HealthCheckSpec, type LoadConfigOptions, type NatsConfig, type NodeConfig, type PoolConfig } from './types.js';

/** Where a value came from: the key to name in errors, the source, and its precedence rank. */
interface Origin { key: string; source: string; rank: number; value: unknown }
interface Entry { path: string; value: unknown; origin: Origin }
interface Layer { key: string; source: string; rank: number }
type Mapping = Record<string, unknown>;
interface Store { get(path: string): unknown; set(path: string, value: unknown): void; validate(o: convict.ValidateOptions): void; getProperties(): any }

const TOP = ['nats', 'jetstream', 'node', 'balancer', 'autoscaler', 'health_check', 'session_pool', 'pools'];
// `shoal.hb.*` and friends would swallow a pool's `shoal.<pool>.acquire`.
const RESERVED_POOLS = ['node', 'hb', 'admin', 'events', 'health'];
const POOL_ENV = /^SHOAL_POOL_/;

const isMapping = (v: unknown): v is Mapping => typeof v === 'object' && v !== null && !Array.isArray(v);
const join = (...parts: string[]) => parts.filter(Boolean).join('.');

/**
 * Build the node's configuration. Lowest precedence first: built-in defaults,
 * the file's `session_pool` block, the pool's own block, AICLI_SESSION_POOL_*
 * (pools whose driver is not weaviate), SHOAL_POOL_<NAME>_<KEY>, `overrides`.
 * Node-level keys: defaults, file, their SHOAL_* variable, `overrides`.
 * Throws ConfigError on the first bad value.
 */
export function loadConfig(opts: LoadConfigOptions = {}): NodeConfig {
  // An empty variable (`SHOAL_NATS_USER=` in a compose file) means unset.
  const env = Object.fromEntries(Object.entries(opts.env ?? process.env).filter(([, v]) => v !== undefined && v !== '')) as Record<string, string>;
  const file = opts.file ?? env.SHOAL_CONFIG;
  // A file named by SHOAL_CONFIG says so: the reader may not know the variable is set.
  const fileSource = !file ? 'default' : opts.file !== undefined ? `file ${resolve(file)}` : `file ${resolve(file)} (from env SHOAL_CONFIG)`;
  const doc = file ? readYaml(file, opts.file !== undefined ? 'argument' : 'env SHOAL_CONFIG') : {};
  const over = expand(opts.overrides ?? {});
  for (const [d, source] of [[doc, fileSource], [over, 'overrides']] as const) {
    // `x-` keys are ignored, as in docker compose, to hold YAML anchors.
    const bad = Object.keys(d).find((k) => !TOP.includes(k) && !k.startsWith('x-'));
    if (bad) throw new ConfigError(bad, d[bad], source, `unknown key; expected one of ${TOP.join(', ')}`);
  }
  const node = loadNode(doc, over, env, fileSource);
  const pools = loadPools(doc, over, env, fileSource);
  const unknown = node.nodePools?.find((name) => !Object.hasOwn(pools, name));
  if (unknown !== undefined) throw new ConfigError('node.pools', node.nodePools, env.SHOAL_NODE_POOLS !== undefined ? 'env SHOAL_NODE_POOLS' : fileSource, `names no pool of the config: ${unknown} (pools: ${Object.keys(pools).join(', ') || 'none'})`);
  return { ...node, pools };
}

function readYaml(file: string, via: string): Mapping {
  const fail = (why: string, err?: unknown) => new ConfigError('file', resolve(file), via, err ? `${why}: ${(err as Error).message}` : why);
  let text: string, doc: unknown;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw fail('cannot read', err);
  }
  try {
    // merge: `<<: *anchor` lets pools share a block.
    doc = parse(text, { merge: true });
  } catch (err) {
    throw fail('not valid YAML', err);
  }
  if (doc == null) return {};
  if (!isMapping(doc)) throw fail('the top level must be a mapping');
  return doc;
}

/** `{ 'a.b': 1 }` and `{ a: { b: 1 } }` both become the latter, merged. */
function expand(o: Mapping, out: Mapping = {}): Mapping {
  for (const [k, v] of Object.entries(o)) {
    const parts = k.split('.');
    const last = parts.pop()!;
    let at = out;
    for (const p of parts) at = (isMapping(at[p]) ? at[p] : (at[p] = {})) as Mapping;
    at[last] = isMapping(v) ? expand(v, isMapping(at[last]) ? at[last] : {}) : v;
  }
  return out;
}

/**
 * Check a YAML block against a schema and flatten it to dotted paths, each
 * tagged with its origin. Empty values (`key:` with nothing) are skipped, so
 * a commented-out section is no error. `options` merges key by key.
 */
function walk(raw: unknown, schema: Section, layer: Layer, path = ''): Entry[] {
  if (raw == null) return [];
  if (!isMapping(raw)) throw new ConfigError(join(layer.key, path), raw, layer.source, 'must be a mapping');
  return Object.entries(raw).flatMap(([k, v]): Entry[] => {
    const p = join(path, k);
    const node = Object.hasOwn(schema, k) ? schema[k] : undefined;
    if (!node) throw new ConfigError(join(layer.key, p), v, layer.source, `unknown key; expected one of ${Object.keys(schema).join(', ')}`);
    if (!isLeaf(node)) return walk(v, node, layer, p);
    if (v == null) return [];
    if (node.format === Object) {
      if (!isMapping(v)) throw new ConfigError(join(layer.key, p), v, layer.source, 'must be a mapping');
      return Object.entries(v).map(([ok, ov]) => entry(layer, join(p, ok), ov));
    }
    return [entry(layer, p, v, node.sensitive)];
  });
}

function entry(layer: Layer, path: string, value: unknown, sensitive = false): Entry {
  return { path, value, origin: { key: join(layer.key, path), source: layer.source, rank: layer.rank, value: sensitive ? '[redacted]' : value } };
}

/**
 * A convict instance holding the entries, applied in order (last wins).
 * We set every layer ourselves rather than let convict read the environment,
 * because convict re-reads it on each load() and cannot express per-pool
 * layers; this way the precedence is the order here and every origin is known.
 */
function build(schema: Section, entries: Entry[], keyBase: string) {
  // Typed loosely: convict's path types do not terminate on an open schema.
  const cfg: Store = convict(schema as convict.Schema<unknown>, { env: {}, args: [] }) as unknown as Store;
  const origins = new Map<string, Origin>();
  for (const e of entries) {
    origins.set(e.path, e.origin);
    cfg.set(e.path, e.value);
  }
  const origin = (path: string): Origin => origins.get(path) ?? { key: join(keyBase, path), source: 'default', rank: 0, value: cfg.get(path) };
  const fail = (path: string, why: string) => new ConfigError(origin(path).key, origin(path).value, origin(path).source, why);
  try {
    cfg.validate({ allowed: 'strict' });
  } catch (err) {
    // convict reports one line per problem, `<path>: <why>[: value was <json>]`;
    // we name the first with our own key, value as written and source.
    const m = /^([\w.-]+): (.*?)(?:: value was .*)?$/m.exec((err as Error).message);
    throw m ? fail(m[1]!, m[2]!) : new ConfigError(keyBase || '(config)', undefined, 'default', (err as Error).message);
  }
  /** Cross-field rule: `low` must be below `high` (or equal if allowed); blame whichever was set later. */
  const ordered = (low: string, high: string, orEqual: boolean) => {
    const [a, b] = [cfg.get(low) as number, cfg.get(high) as number];
    if (orEqual ? a <= b : a < b) return;
    const [bad, other] = origin(high).rank > origin(low).rank ? [high, low] : [low, high];
    const elsewhere = origin(other).source === origin(bad).source ? '' : `; ${other} is from ${origin(other).source}`;
    throw fail(bad, `${low} (${a}) must be ${orEqual ? '<=' : '<'} ${high} (${b})${elsewhere}`);
  };
  const sources = () => Object.fromEntries(leaves(schema).filter(([, l]) => l.format !== Object).map(([path]) => [path, origin(path).source]));
  return { props: cfg.getProperties() as any, origin, fail, ordered, sources };
}

function envEntries(vars: [name: string, path: string][], env: Record<string, string>, keyBase: string, rank: number): Entry[] {
  return vars.filter(([name]) => env[name] !== undefined).map(([name, path]) => entry({ key: keyBase, source: `env ${name}`, rank }, path, env[name]));
}

function loadNode(doc: Mapping, over: Mapping, env: Record<string, string>, fileSource: string): Omit<NodeConfig, 'pools'> {
  const nodeOnly = (d: Mapping) => ({ nats: d.nats, jetstream: d.jetstream, node: d.node, balancer: d.balancer, autoscaler: d.autoscaler, health_check: d.health_check });
  const vars = leaves(NODE_SCHEMA).flatMap(([path, leaf]): [string, string][] => (leaf.env ? [[leaf.env, path]] : []));
  const { props: p, ordered, sources } = build(NODE_SCHEMA, [
    ...walk(nodeOnly(doc), NODE_SCHEMA, { key: '', source: fileSource, rank: 1 }),
    ...envEntries(vars, env, '', 2),
    ...walk(nodeOnly(over), NODE_SCHEMA, { key: '', source: 'overrides', rank: 3 }),
  ], '');
  ordered('balancer.suspect_after', 'balancer.gone_after', false);

  const n = p.nats;
  const tls = defined({ caFile: n.tls.ca_file, certFile: n.tls.cert_file, keyFile: n.tls.key_file });
  const nats: NatsConfig = {
    servers: n.url,
    ...defined({ user: n.user, pass: n.pass, token: n.token, nkeySeedFile: n.nkey_seed_file, credsFile: n.creds_file, name: n.name }),
    ...(Object.keys(tls).length ? { tls } : {}),
  };
  const b = p.balancer;
  return {
    ...defined({ nodeId: p.node.id, nodePools: p.node.pools }),
    prefix: p.node.prefix,
    nats,
    jetstream: { ...defined({ replicas: p.jetstream.replicas, domain: p.jetstream.domain }), storage: p.jetstream.storage },
    http: { host: p.node.http_host, port: p.node.http_port },
    heartbeatIntervalMs: p.node.heartbeat_interval,
    drainGraceMs: p.node.drain_grace,
    maxConcurrentRequests: p.node.max_concurrent_requests,
    logLevel: p.node.log_level,
    autoscaler: { leaseTtlMs: p.autoscaler.lease_ttl, intervalMs: p.autoscaler.interval },
    ...defined({ memoryLimitBytes: p.node.memory_limit }),
    healthCheck: healthCheck(p.health_check),
    balancer: {
      strategy: b.strategy,
      suspectAfterIntervals: b.suspect_after,
      goneAfterIntervals: b.gone_after,
      circuitFailureThreshold: b.circuit_failure_threshold,
      circuitCooldownMs: b.circuit_cooldown,
      performanceWeights: { latency: b.performance_weights.latency, throughput: b.performance_weights.throughput, errorRate: b.performance_weights.error_rate, resource: b.performance_weights.resource },
    },
    sources: sources(),
  };
}

function healthCheck(h: Mapping): HealthCheckConfig {
  const checks = (h.checks as Mapping[]).map((c): HealthCheckSpec => {
    if (c.type === 'ping') return { type: 'ping', endpoint: String(c.endpoint ?? '/health') };
    if (c.type === 'response_time') return { type: 'response_time', maxLatencyMs: parseDuration(c.max_latency) };
    return { type: 'memory_usage', maxUsagePercent: parsePercent(c.max_usage)! };
  });
  return {
    enabled: h.enabled as boolean,
    ...(h.interval != null ? { intervalMs: h.interval as number } : {}),
    timeoutMs: h.timeout as number,
    failureThreshold: h.failure_threshold as number,
    recoveryThreshold: h.recovery_threshold as number,
    drainAfterMs: h.drain_after as number,
    checks,
  };
}

function defined<T extends Mapping>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v != null)) as Partial<T>;
}

function loadPools(doc: Mapping, over: Mapping, env: Record<string, string>, fileSource: string): Record<string, PoolConfig> {
  const shared = walk(doc.session_pool, SHARED_SCHEMA, { key: 'session_pool', source: fileSource, rank: 1 });
  const sharedOver = walk(over.session_pool, SHARED_SCHEMA, { key: 'session_pool', source: 'overrides', rank: 5 });
  // No `pools` key: the built-in light synthetic pool. `pools: {}` means none.
  const blocksSource = doc.pools == null ? 'default' : fileSource;
  const asPools = (b: unknown, source: string): Mapping => {
    if (!isMapping(b)) throw new ConfigError('pools', b, source, 'must be a mapping of pool name to pool block');
    return b;
  };
  const blocks = asPools(doc.pools ?? DEFAULT_POOLS, blocksSource);
  const overBlocks = asPools(over.pools ?? {}, 'overrides');
  const sourceOf = (name: string) => (Object.hasOwn(blocks, name) ? blocksSource : 'overrides');
  const names = [...new Set([...Object.keys(blocks), ...Object.keys(overBlocks)])];

  const varsOf = new Map<string, [name: string, path: string][]>();
  for (const name of names) {
    const source = sourceOf(name);
    if (!TOKEN.test(name)) throw new ConfigError(`pools.${name}`, name, source, 'a pool name must be 1-64 of A-Z a-z 0-9 _ -');
    if (RESERVED_POOLS.includes(name)) throw new ConfigError(`pools.${name}`, name, source, `reserved (${RESERVED_POOLS.join(', ')} are Shoal's own subjects)`);
    const NAME = name.toUpperCase().replaceAll('-', '_');
    const twin = [...varsOf.keys()].find((n) => n.toUpperCase().replaceAll('-', '_') === NAME);
    if (twin) throw new ConfigError(`pools.${name}`, name, source, `SHOAL_POOL_${NAME}_* would configure both ${twin} and ${name}`);
    varsOf.set(name, leaves(POOL_SCHEMA).filter(([path]) => path !== 'options')
      .map(([path]) => [`SHOAL_POOL_${NAME}_${path.replaceAll('.', '_').toUpperCase()}`, path]));
  }
  // A mistyped SHOAL_POOL_* variable would otherwise be ignored in silence.
  const known = new Set([...varsOf.values()].flat().map(([v]) => v));
  const stray = Object.keys(env).find((v) => POOL_ENV.test(v) && !known.has(v));
  if (stray) throw new ConfigError(stray, env[stray], `env ${stray}`, `names no pool and key (pools: ${names.join(', ') || 'none'}; e.g. SHOAL_POOL_<NAME>_MAX_SIZE)`);

  const aicliVars = Object.entries(AICLI_ENV).map(([suffix, path]): [string, string] => [`AICLI_SESSION_POOL_${suffix}`, path]);
  const pools: Record<string, PoolConfig> = {};
  for (const name of names) {
    const key = `pools.${name}`;
    const source = sourceOf(name);
    const own = walk(blocks[name], POOL_SCHEMA, { key, source, rank: 2 });
    const poolEnv = envEntries(varsOf.get(name)!, env, key, 4);
    const ownOver = walk(overBlocks[name], POOL_SCHEMA, { key, source: 'overrides', rank: 6 });
    const driver = [...own, ...poolEnv, ...ownOver].filter((e) => e.path === 'driver').at(-1)?.value;
    if (driver === undefined) throw new ConfigError(`${key}.driver`, undefined, source, `missing; one of ${DRIVERS.join(', ')}`);
    // Weaviate pools take VECTOR_STORE_* and WEAVIATE_* instead; AICLI_* belong to the session pool.
    const design = driver === 'weaviate' ? weaviateEntries(env, key) : envEntries(aicliVars, env, key, 3);
    pools[name] = toPool(name, build(POOL_SCHEMA, [...shared, ...own, ...design, ...poolEnv, ...sharedOver, ...ownOver], key));
  }
  return pools;
}

const BOOL_WORDS: Record<string, boolean> = { true: true, false: false, yes: true, no: false, on: true, off: false, '1': true, '0': false };

/** VECTOR_STORE_* and WEAVIATE_* for a weaviate pool, at the rank of AICLI_SESSION_POOL_* for other pools. */
function weaviateEntries(env: Record<string, string>, keyBase: string): Entry[] {
  const out: Entry[] = [];
  for (const [name, v] of Object.entries(WEAVIATE_ENV)) {
    const raw = env[name];
    if (raw === undefined) continue;
    const source = `env ${name}`;
    const bad = (why: string) => new ConfigError(join(keyBase, v.path), v.sensitive ? '[redacted]' : raw, source, why);
    let value: unknown = raw.trim();
    if (v.read === 'seconds' && /^\d+(\.\d+)?$/.test(raw.trim())) value = `${raw.trim()}s`;
    if (v.read === 'bool') {
      value = BOOL_WORDS[raw.trim().toLowerCase()];
      if (value === undefined) throw bad('must be true or false');
    }
    if (v.read === 'port') {
      value = Number(raw);
      if (!/^\d+$/.test(raw.trim()) || (value as number) < 1 || (value as number) > 65535) throw bad('must be a port number (1 to 65535)');
    }
    const e = entry({ key: keyBase, source, rank: 3 }, v.path, value, v.sensitive);
    if (!v.sensitive) e.origin.value = raw; // errors show the variable as written
    out.push(e);
  }
  return out;
}

function toPool(name: string, { props: p, origin, fail, ordered, sources }: ReturnType<typeof build>): PoolConfig {
  ordered('min_size', 'max_size', true);
  ordered('auto_scaling.scale_down_threshold', 'auto_scaling.scale_up_threshold', false);
  ordered('create.retry_base', 'create.retry_max', true);
  let initial: number = p.initial_size ?? p.min_size;
  if (initial < p.min_size || initial > p.max_size) {
    const bound = initial < p.min_size ? 'min_size' : 'max_size';
    // An inherited initial_size (say session_pool's 20) yields to a pool's
    // smaller max_size; one set as specifically as the bound is a mistake.
    if (origin('initial_size').rank >= origin(bound).rank) {
      throw fail('initial_size', `must be from min_size (${p.min_size}) to max_size (${p.max_size})`);
    }
    initial = p[bound];
  }
  const { auto_scaling: a, load_balancing: lb, session_management: sm, resource_limits: rl, create: c } = p;
  return {
    name,
    driver: p.driver,
    options: p.options,
    minSize: p.min_size,
    maxSize: p.max_size,
    initialSize: initial,
    maxWaitingClients: p.max_waiting_clients,
    acquireTimeoutMs: p.acquire_timeout,
    leaseTtlMs: p.lease_ttl,
    weight: p.weight,
    autoScaling: {
      enabled: a.enabled,
      scaleUpThreshold: a.scale_up_threshold,
      scaleDownThreshold: a.scale_down_threshold,
      scaleUpIncrement: a.scale_up_increment,
      scaleDownIncrement: a.scale_down_increment,
      cooldownMs: a.cooldown_period,
      stabilizationWindowMs: a.stabilization_window,
      predictive: a.predictive,
      scaleDownToFit: a.scale_down_to_fit,
    },
    scalingPolicies: readPolicies(p.scaling_policies),
    loadBalancing: { strategy: lb.strategy, healthCheckIntervalMs: lb.health_check_interval, circuitBreakerEnabled: lb.circuit_breaker_enabled },
    sessionManagement: {
      enableReuse: sm.enable_reuse,
      idleTimeoutMs: sm.idle_timeout,
      maxLifetimeMs: sm.max_lifetime,
      lifetimeJitter: sm.lifetime_jitter,
      maxReuseCount: sm.max_reuse_count,
      contextReset: sm.context_reset,
      cleanupIntervalMs: sm.cleanup_interval,
      validateOnReturn: sm.validate_on_return,
      validateSkipWindowMs: sm.validate_skip_window,
      maxParked: sm.max_parked,
      parkTtlMs: sm.park_ttl,
    },
    create: { timeoutMs: c.timeout, retryBaseMs: c.retry_base, retryMaxMs: c.retry_max },
    maxConcurrentCreates: p.max_concurrent_creates ?? defaultMaxConcurrentCreates(p.driver),
    sources: sources(),
    resourceLimits: {
      maxMemoryPerSessionBytes: rl.max_memory_per_session,
      maxTotalMemoryBytes: rl.max_total_memory,
      maxConcurrentRequests: rl.max_concurrent_requests,
      maxPayloadBytes: rl.max_payload,
    },
  };
}

/**
 * A service's start-up: load the config, or print the one-line reason
 * (key, value, source) and exit 2 — the same for every Shoal process.
 */
export function loadConfigOrExit(service: string, opts?: LoadConfigOptions): NodeConfig {
  try {
    return loadConfig(opts);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${service}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
