// Library surface of the balancer's pure parts; the process wiring lives elsewhere.
export * from './strategies/index.js';
export * from './membership.js';
export * from './circuit.js';
