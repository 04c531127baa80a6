export * from './version.js';
export * from './errors.js';
export * from './codec.js';
export * from './ids.js';
export * from './subjects.js';
export * from './validate.js';
export * from './messages.js';
export * from './metrics.js';
