export { loadConfig, loadConfigOrExit } from './load.js';
export { ConfigError } from './errors.js';
export { parseDuration, parseSize } from './units.js';
export { DRIVERS, STRATEGIES, LOG_LEVELS } from './types.js';
export type { HealthCheckConfig, HealthCheckSpec, NodeConfig, PoolConfig, NatsConfig, LoadConfigOptions, DriverName, Strategy, LogLevel } from './types.js';
export { POLICY_METRICS, readPolicies, type ScalingPolicy, type PolicyMetric } from './schema.js';
