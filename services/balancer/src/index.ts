// Library surface: the pure parts (strategies, membership, circuit) and the
// actor for in-process use (benchmarks, tests); the process is main.ts.
export * from './strategies/index.js';
export * from './membership.js';
export * from './circuit.js';
export { Balancer, type BalancerSettings, type BalancerStatus, type ExecMode, type NodeStatus } from './balancer.js';
export { SettingsStore, STRATEGY_KEY, WEIGHT_KEY_PREFIX } from './settings.js';
