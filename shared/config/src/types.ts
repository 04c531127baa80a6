import type { NatsSettings } from '@shoal/runtime';
import type { ScalingPolicy } from './schema.js';

export const DRIVERS = ['synthetic', 'claude-cli', 'weaviate'] as const;
export const STRATEGIES = ['round_robin', 'least_connections', 'weighted_round_robin', 'performance_based', 'p2c'] as const;
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

export type DriverName = (typeof DRIVERS)[number];

/**
 * `max_concurrent_creates` when a pool does not set it: a Claude CLI process
 * costs a spawn, a Node runtime and an API handshake, so few at once; a
 * Weaviate client is a connection; a synthetic resource is nearly free.
 */
export const DEFAULT_MAX_CONCURRENT_CREATES: Readonly<Record<DriverName, number>> = Object.freeze({ 'claude-cli': 4, weaviate: 16, synthetic: 64 });

/** The default for a driver kind; unknown kinds (test drivers) get the synthetic one. */
export function defaultMaxConcurrentCreates(kind: string): number {
  return Object.hasOwn(DEFAULT_MAX_CONCURRENT_CREATES, kind) ? DEFAULT_MAX_CONCURRENT_CREATES[kind as DriverName] : DEFAULT_MAX_CONCURRENT_CREATES.synthetic;
}
export type Strategy = (typeof STRATEGIES)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];

/** How to reach NATS: @shoal/runtime's own settings type, so a loaded config passes straight in. Unset fields are absent; `tls` only when a TLS file is configured. */
export type NatsConfig = Omit<NatsSettings, 'waitOnFirstConnect'>;

export interface PoolConfig {
  /** The key under `pools:`; one NATS subject token. */
  name: string;
  driver: DriverName;
  /** Driver options as written: durations and sizes inside are not parsed (use parseDuration/parseSize). */
  options: Record<string, unknown>;
  minSize: number;
  maxSize: number;
  initialSize: number;
  maxWaitingClients: number;
  /** Acquire deadline when a client gives none. */
  acquireTimeoutMs: number;
  leaseTtlMs: number;
  /** Placement weight of this node for this pool. */
  weight: number;
  autoScaling: {
    enabled: boolean;
    scaleUpThreshold: number;
    scaleDownThreshold: number;
    scaleUpIncrement: number;
    scaleDownIncrement: number;
    cooldownMs: number;
    /** A scale-down needs every tick of this window to have asked for one. */
    stabilizationWindowMs: number;
    /** Create ahead of a rising demand (forecast over the measured create latency). */
    predictive: boolean;
    /** A stabilized scale-down may go past scale_down_increment, down to the size that fits the window's peak demand mid-band. */
    scaleDownToFit: boolean;
  };
  scalingPolicies: ScalingPolicy[];
  loadBalancing: { strategy: Strategy; healthCheckIntervalMs: number; circuitBreakerEnabled: boolean };
  sessionManagement: {
    enableReuse: boolean;
    idleTimeoutMs: number;
    maxLifetimeMs: number;
    /** 0..1: each resource's max lifetime is shortened by up to this fraction. */
    lifetimeJitter: number;
    /** 0 = unlimited. */
    maxReuseCount: number;
    contextReset: boolean;
    cleanupIntervalMs: number;
    validateOnReturn: boolean;
    validateSkipWindowMs: number;
    /** Resources kept with their context under a key (release `park`); 0 = off. */
    maxParked: number;
    /** A parked resource not claimed within this is reset and reused. */
    parkTtlMs: number;
  };
  create: { timeoutMs: number; retryBaseMs: number; retryMaxMs: number };
  /** Creates in flight on this node for this pool, whatever the target (the driver's default when not set). */
  maxConcurrentCreates: number;
  /**
   * Where each key's value came from, by the key's path in the pool block
   * (`load_balancing.strategy`): `default`, `file <path>`, `env <NAME>` or
   * `overrides`. Lets a balancer tell a strategy the config sets from the
   * built-in one, and `shoal status` say where a value came from.
   */
  sources?: Record<string, string>;
  resourceLimits: {
    maxMemoryPerSessionBytes: number;
    maxTotalMemoryBytes: number;
    maxConcurrentRequests: number;
    maxPayloadBytes: number;
  };
}

/** One entry of `health_check.checks`, parsed. */
export type HealthCheckSpec =
  | { type: 'ping'; endpoint: string }
  | { type: 'response_time'; maxLatencyMs: number }
  | { type: 'memory_usage'; maxUsagePercent: number };

export interface HealthCheckConfig {
  enabled: boolean;
  /** Undefined: each node's shortest pool `load_balancing.health_check_interval` (from its heartbeat). */
  intervalMs?: number;
  timeoutMs: number;
  failureThreshold: number;
  recoveryThreshold: number;
  /** A node told it is unhealthy this long drains itself; 0 = never. */
  drainAfterMs: number;
  checks: HealthCheckSpec[];
}

export interface JetStreamConfig {
  /** Unset: 3 on a cluster of 3 or more servers, else 1. */
  replicas?: number;
  storage: 'file' | 'memory';
  domain?: string;
}

export interface NodeConfig {
  /** Undefined: the node generates a ULID. */
  nodeId?: string;
  /** `node.pools`: the pools a pool-node serves; undefined = every pool of the config. Other services read them all. */
  nodePools?: string[];
  prefix: string;
  nats: NatsConfig;
  /** The KV buckets Shoal creates (settings, and others' `shoal_<what>`). */
  jetstream: JetStreamConfig;
  /** port 0 = ephemeral, -1 = no HTTP server. */
  http: { host: string; port: number };
  heartbeatIntervalMs: number;
  drainGraceMs: number;
  /** Node-wide cap on requests in flight. */
  maxConcurrentRequests: number;
  logLevel: LogLevel;
  autoscaler: { leaseTtlMs: number; intervalMs: number };
  /** The node's memory limit for memory_usage checks; undefined = the cgroup's, else the machine's. */
  memoryLimitBytes?: number;
  healthCheck: HealthCheckConfig;
  balancer: {
    strategy: Strategy;
    suspectAfterIntervals: number;
    goneAfterIntervals: number;
    circuitFailureThreshold: number;
    circuitCooldownMs: number;
    performanceWeights: { latency: number; throughput: number; errorRate: number; resource: number };
  };
  pools: Record<string, PoolConfig>;
  /** Where each node-level key's value came from (`balancer.strategy` -> `default`, `file <path>`, `env <NAME>`, `overrides`). */
  sources?: Record<string, string>;
}

export interface LoadConfigOptions {
  /** YAML file; defaults to env SHOAL_CONFIG, else none (built-in defaults). */
  file?: string;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** YAML-shaped keys, nested or dotted (`{ 'pools.synthetic.max_size': 4 }`); beat everything else. */
  overrides?: Record<string, unknown>;
}
