// Library surface: the pure parts (strategies, membership, circuit) and the
// actor for in-process use (benchmarks, tests); the process is main.ts.
export * from './strategies/index.js';
export * from './membership.js';
export * from './circuit.js';
export { Balancer, type BalancerSettings, type BalancerStatus, type ExecMode, type NodeStatus } from './balancer.js';
export { SettingsStore, STRATEGY_KEY, WEIGHT_KEY_PREFIX, ownedKey, type SettingMeta } from './settings.js';
export { RuntimeSettings, DEFAULT_ACQUIRE_TIMEOUT_MS, type PoolPolicy, type PolicyConfig, type SettingRow } from './runtime-settings.js';
