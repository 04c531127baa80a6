export * from './errors.js';
export * from './stream.js';
export * from './client.js';
