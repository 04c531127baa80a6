export { loadConfig, loadConfigOrExit } from './load.js';
export { ConfigError } from './errors.js';
export { parseDuration, parseSize } from './units.js';
export { DRIVERS, STRATEGIES, LOG_LEVELS, DEFAULT_MAX_CONCURRENT_CREATES, defaultMaxConcurrentCreates } from './types.js';
export type { HealthCheckConfig, HealthCheckSpec, JetStreamConfig, NodeConfig, PoolConfig, NatsConfig, LoadConfigOptions, DriverName, Strategy, LogLevel } from './types.js';
export { POLICY_METRICS, readPolicies, type ScalingPolicy, type PolicyMetric } from './schema.js';
