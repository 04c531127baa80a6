export * from './clock.js';
export * from './driver.js';
export * from './pool.js';
export * from './stats.js';
export * from './node.js';
export { drivers, driverFor } from './drivers/index.js';
export { syntheticDriver } from './drivers/synthetic.js';
