import type { NatsSettings } from '@shoal/runtime';

export const DRIVERS = ['synthetic', 'claude-cli', 'weaviate'] as const;
export const STRATEGIES = ['round_robin', 'least_connections', 'weighted_round_robin', 'performance_based', 'p2c'] as const;
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

export type DriverName = (typeof DRIVERS)[number];
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
  };
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
  resourceLimits: {
    maxMemoryPerSessionBytes: number;
    maxTotalMemoryBytes: number;
    maxConcurrentRequests: number;
    maxPayloadBytes: number;
  };
}

export interface NodeConfig {
  /** Undefined: the node generates a ULID. */
  nodeId?: string;
  prefix: string;
  nats: NatsConfig;
  /** port 0 = ephemeral, -1 = no HTTP server. */
  http: { host: string; port: number };
  heartbeatIntervalMs: number;
  drainGraceMs: number;
  /** Node-wide cap on requests in flight. */
  maxConcurrentRequests: number;
  logLevel: LogLevel;
  balancer: {
    strategy: Strategy;
    suspectAfterIntervals: number;
    goneAfterIntervals: number;
    circuitFailureThreshold: number;
    circuitCooldownMs: number;
    performanceWeights: { latency: number; throughput: number; errorRate: number; resource: number };
  };
  pools: Record<string, PoolConfig>;
}

export interface LoadConfigOptions {
  /** YAML file; defaults to env SHOAL_CONFIG, else none (built-in defaults). */
  file?: string;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** YAML-shaped keys, nested or dotted (`{ 'pools.synthetic.max_size': 4 }`); beat everything else. */
  overrides?: Record<string, unknown>;
}
