// Library surface: the pure verdict rules and the actor (tests, in-process use); the process is main.ts.
export * from './verdict.js';
export { HealthChecker, type CheckerSettings, type CheckerStatus } from './checker.js';
export { HealthMetricNames } from './metrics.js';
