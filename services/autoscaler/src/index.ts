export * from './autoscaler.js';
export * from './decide.js';
export * from './desired.js';
export * from './forecast.js';
export * from './leader.js';
export * from './metrics.js';
export * from './spread.js';
